"""Prune by retention and delete by hand: both remove manifests only, never chunks (GC does
that). Both run under the maintenance lock so they never overlap a GC's mark phase, and
neither removes a point that a running backup uses as its base (§GC, base pinning)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from drivers.repository.errors import CorruptManifest, PointBusy
from drivers.repository.locks import MaintenanceLock, live_leases
from drivers.repository.manifest import RestorePoint
from models.retention import Retention, expired_points

if TYPE_CHECKING:
    from drivers.repository import Repository


class PruneReport(BaseModel):
    expired: list[str]  # selected by the retention policy
    deleted: list[str]
    busy: list[str] = []  # expired but pinned as the base of a running backup: next time
    dry_run: bool = False


def _delete(repo: "Repository", point_id: str, *, force: bool) -> None:
    # Hide first, then look for pins: a backup that pinned the point after our look would
    # not have found its base, so it cannot be relying on it (spec §GC, step B2).
    aside = repo.points.remove(point_id)
    pinned = {lease.base_point: lease for lease in live_leases(repo.layout)}
    if point_id in pinned and not force:
        repo.points.restore(aside, point_id)
        lease = pinned[point_id]
        raise PointBusy(
            f"restore point {point_id} is the base of running backup {lease.point_id} (host {lease.host}, "
            f"pid {lease.pid}); delete it after that backup ends"
        )
    repo.points.finish_remove(aside)


def delete_point(repo: "Repository", point_id: str, *, force: bool = False) -> None:
    with MaintenanceLock(repo.layout, f"delete {point_id}"):
        _delete(repo, point_id, force=force)


def select_points(repo: "Repository", *, plan: str | None = None, vm: str | None = None) -> list[RestorePoint]:
    out = []
    for pid in repo.points.ids():
        try:
            p = repo.points.read(pid)
        except (CorruptManifest, FileNotFoundError):
            continue
        if plan is not None and p.plan != plan:
            continue
        if vm is not None and vm not in (p.vm_id, p.vm_name):
            continue
        out.append(p)
    out.sort(key=lambda p: (p.created_at, p.id))
    return out


def prune(repo: "Repository", retention: Retention, now: datetime, *, plan: str | None = None,
          vm: str | None = None, dry_run: bool = False) -> PruneReport:
    with MaintenanceLock(repo.layout, "prune"):
        expired = expired_points(select_points(repo, plan=plan, vm=vm), retention, now)
        report = PruneReport(expired=expired, deleted=[], dry_run=dry_run)
        if dry_run:
            return report
        for pid in expired:
            try:
                _delete(repo, pid, force=False)
                report.deleted.append(pid)
            except PointBusy:
                report.busy.append(pid)
        return report
