"""The maintenance activity itself (real catalog, real repository, real files), run in
Temporal's ActivityEnvironment so every heartbeat it sends is seen: a verify slowed by an
IOPS cap reports as a function of elapsed time, and verify cross-checks the catalog."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from temporalio.testing import ActivityEnvironment

from activities.backup import BackupActivities
from activities.resources import Resources
from activities.site_admin import REPORT_S, SiteAdminActivities
from drivers.catalog.store import Catalog
from drivers.repository import Repository, SyncMode
from models.inventory import Site
from models.jobs import MaintenanceInput
from models.restore_points import (
    PointCreation,
    PointState,
    PointType,
    RestorePointSummary,
)
from models.services import RepositorySpec
from tests.drivers.repository.conftest import CS, FileDisk, MiB, backup, make_content, vm_config


def setup(tmp_path: Path, vms: int, size: int) -> tuple[SiteAdminActivities, Catalog, Repository, list[str]]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.add_site(Site(name="default"))
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE)
    catalog.add_repository(RepositorySpec(name="r1", path=str(repo.root), site="default"))
    ids = []
    for i in range(vms):
        d = FileDisk(tmp_path / f"d{i}.img", size, bytes(make_content(size, 50 + i)))
        p = backup(repo, vm_config(f"vm{i}", disk0=size), {"disk0": d})
        d.close()
        catalog.add_restore_point(RestorePointSummary(
            id=p.id, plan=None, cluster="c1", vm=f"vm{i}", type=PointType.FULL, creation=PointCreation.MANUAL,
            created_at=datetime.now(UTC), repository="r1"))
        ids.append(p.id)
    res = Resources(catalog, "default")
    return SiteAdminActivities(res, BackupActivities(res)), catalog, repo, ids


def test_a_slow_verify_heartbeats_by_elapsed_time(tmp_path: Path) -> None:
    admin, _, repo, [pid] = setup(tmp_path, 1, 2 * MiB)
    stored = len(repo.get_point(pid).digests())
    beats: list[dict] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *d: beats.append({"at": time.monotonic(), **d[0]})
    t0 = time.monotonic()
    out = env.run(admin.maintain_repository, MaintenanceInput(repository="r1", prune=False, gc=True, read_iops=4))
    elapsed = time.monotonic() - t0
    assert out.findings == 0 and out.counts["chunks_checked"] == stored
    assert elapsed >= (stored - 1) / 4  # the cap held it back: at least one I/O per chunk
    chunks = [b for b in beats if b["op"] == "verify" and b["phase"] == "chunks"]
    # One report per REPORT_S of elapsed time, not one per phase (allowing half of them late).
    assert len(chunks) >= max(2, int((stored - 1) / 4 / REPORT_S) // 2), beats
    assert [b["done"] for b in chunks] == sorted(b["done"] for b in chunks)
    assert any(b["op"] == "gc" for b in beats)


def test_verify_reports_and_marks_what_the_catalog_and_repository_disagree_on(tmp_path: Path) -> None:
    admin, catalog, repo, [broken, deleted, healthy] = setup(tmp_path, 3, 256 * 1024)
    path = repo.layout.point(broken)
    blob = bytearray(path.read_bytes())
    blob[0] ^= 0xFF
    path.write_bytes(bytes(blob))
    repo.layout.point(deleted).unlink()
    catalog.delete_restore_point(healthy)  # the catalog forgot a point the repository holds...
    fresh = ActivityEnvironment().run(admin.maintain_repository, MaintenanceInput(repository="r1", prune=False,
                                                                                 gc=False))
    assert healthy not in {f["point_id"] for f in fresh.damaged}  # ...or is about to record it (just committed)
    old = time.time() - 3600
    os.utime(repo.layout.point(healthy), (old, old))  # committed an hour ago: the catalog forgot it

    out = ActivityEnvironment().run(admin.maintain_repository, MaintenanceInput(repository="r1", prune=False, gc=False))
    kinds = {(f["kind"], f["point_id"]) for f in out.damaged}
    assert kinds == {("unreadable_manifest", broken), ("missing_manifest", deleted), ("unknown_manifest", healthy)}
    assert sorted(out.damaged_points) == sorted([broken, deleted]) and out.findings == 3
    assert {catalog.get_restore_point(p).state for p in (broken, deleted)} == {PointState.DAMAGED}
