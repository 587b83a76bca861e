"""Administrative activities that need a site's I/O: creating a repository on its path,
listing a cluster's VMs (refreshing the catalog's cache), deleting restore points, and
repository maintenance (verify, prune by each plan's retention, garbage collection)."""

from __future__ import annotations

import errno
import os
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.backup import BackupActivities
from activities.errors import InvalidRequest, translate_errors
from activities.heartbeat import Progress
from activities.resources import Resources
from drivers.base import InvalidState, NotFound, OperationTimeout
from drivers.catalog.errors import StateConflict
from drivers.repository.progress import MaintenanceProgress
from models.activity_api import SiteAdminApi
from models.admin import (
    CreatedRepository,
    DeletedPoints,
    DiskExport,
    ExportedDisk,
    FindingsPage,
    InstalledKey,
    VMOnCluster,
    VMStop,
)
from models.inventory import VM, PowerState
from models.jobs import FINDINGS_SAMPLE, MaintenanceInput, MaintenanceResult
from models.plans import VMRef
from models.replication import ReplicaState
from models.restore_points import PointState
from models.retention import expired_points
from models.services import RepositoryCreate, RepositoryFindingsQuery, RepositoryKeyFile, RepositorySpec


def path_refusal(path: Path, e: OSError) -> InvalidRequest:
    """An OS error on a repository's path as what is wrong and what to do about it, rather
    than an errno string (bad input: exit 2, REST 400)."""
    if isinstance(e, NotADirectoryError) or path.is_file():
        problem = "is a file (or inside one), not a directory"
        fix = "give a new or empty directory, or an existing abdr repository"
    elif isinstance(e, PermissionError):
        problem = "cannot be created or written by the site's worker (permission denied)"
        fix = "give a directory it may write, or give its user write access to this one"
    elif e.errno == errno.EROFS:
        problem = "is on a read-only file system"
        fix = "give a directory on a writable volume (or mount this one read-write)"
    elif e.errno == errno.ENOSPC:
        problem = "is on a full volume"
        fix = "free space there or give a directory on another volume"
    else:
        problem = f"cannot be created or used ({e.strerror or type(e).__name__})"
        fix = "give a directory on a mounted, writable file system"
    return InvalidRequest(f"repository path {path} {problem}: {fix}")


class SiteAdminActivities(SiteAdminApi):
    def __init__(self, res: Resources, backup: BackupActivities) -> None:
        self.res = res
        self.backup = backup

    @activity.defn(name="admin_create_repository")
    @translate_errors
    def create_repository(self, p: dict) -> CreatedRepository:
        """Create (or adopt) a repository; with `encrypt`, under a new key or the key file
        named, which the worker keeps in its key directory before any data is written."""
        from drivers.repository import RepoKey, Repository, install_key

        req = RepositoryCreate.model_validate(p)
        spec = RepositorySpec.model_validate(req.model_dump(exclude={"encrypt", "key_file"}))
        path = Path(spec.path)
        if spec.site != self.res.site:
            raise InvalidRequest(f"repository {spec.name!r} belongs to site {spec.site!r}, not {self.res.site!r}")
        if not path.parent.is_dir():
            raise InvalidRequest(f"repository path {spec.path}: parent directory {path.parent} does not exist "
                                 "(mount the volume first)")
        if req.key_file and not req.encrypt:
            raise InvalidRequest("--key-file is the key of an encrypted repository: give --encrypt too")
        key = RepoKey.load(Path(req.key_file)) if req.key_file else None
        try:
            if path.exists() and any(path.iterdir()):
                # An existing abdr repository is adopted (with its key if encrypted); anything else is refused.
                repo = Repository.open(path, key=key, key_dir=self.res.key_dir)
                if req.encrypt and repo.key is None:
                    raise InvalidRequest(f"repository at {path} exists unencrypted; --encrypt applies to new "
                                         "repositories only")
            else:
                if req.encrypt and key is None:
                    key = RepoKey.generate()
                if key is not None:  # kept before the repository exists: never a repository without its key
                    install_key(self._key_dir(), key)
                repo = Repository.init(path, key=key)
        except OSError as e:
            raise path_refusal(path, e) from None  # the refusal, not the errno string, is the message
        out = CreatedRepository(**dict(spec))
        if repo.key is not None:
            out.key_file = str(install_key(self._key_dir(), repo.key))
            out.key_id = repo.key.key_id
        self.res.catalog.add_repository(spec)
        return out

    @activity.defn(name="admin_add_repository_key")
    @translate_errors
    def add_repository_key(self, p: dict) -> InstalledKey:
        """Give this worker the key of an encrypted repository (a wrong key is refused)."""
        from drivers.repository import RepoKey, Repository, install_key

        req = RepositoryKeyFile.model_validate(p)
        spec = self.res.catalog.get_repository(req.name)
        key = RepoKey.load(Path(req.key_file))
        repo = Repository.open(spec.path, key=key)  # EncryptionError if it is not this repository's key
        if repo.key is None:
            raise InvalidRequest(f"repository {req.name!r} is not encrypted: it needs no key")
        return InstalledKey(name=req.name, key_file=str(install_key(self._key_dir(), key)), key_id=key.key_id)

    @activity.defn(name="admin_repository_findings")
    @translate_errors
    def repository_findings(self, p: dict) -> FindingsPage:
        """A page of the last verify's findings, streamed from the repository's report file."""
        from drivers.repository.verify import read_findings

        q = RepositoryFindingsQuery.model_validate(p)
        repo = self.res.repository(self.res.catalog.get_repository(q.name).path)
        summary, page = read_findings(repo, q.offset, q.limit)
        if summary is None:
            raise InvalidRequest(f"repository {q.name!r} has not been verified yet (`abdr repository verify`)")
        total = sum(summary.get(k, 0) for k in FINDING_COUNTS)
        return FindingsPage(repository=q.name, counts=summary, total=total, offset=q.offset,
                            findings=[_bounded(f) for f in page])

    def _key_dir(self) -> Path:
        if self.res.key_dir is None:
            raise InvalidRequest(f"site {self.res.site!r}'s worker has no key directory for encrypted repositories")
        return self.res.key_dir

    @activity.defn(name="admin_list_vms")
    @translate_errors
    def list_vms(self, p: dict) -> list[VM]:
        vms = self.res.driver(p["cluster"]).list_vms()
        self.res.catalog.cache_vms(p["cluster"], vms)
        return vms

    def _vm_id(self, at: VMOnCluster) -> str:
        return self.backup.vm_id(VMRef(cluster=at.cluster, vm=at.vm))  # NotFound names the VM

    @activity.defn(name="admin_start_vm")
    @translate_errors
    def start_vm(self, at: VMOnCluster) -> VM:
        """Power a VM on (a running VM stays as it is), unless that would run a second copy
        of a replicated VM."""
        vm_id = self._vm_id(at)
        self._refuse_second_copy(at)
        return self.res.driver(at.cluster).power_on(vm_id)

    def _refuse_second_copy(self, at: VMOnCluster) -> None:
        """Two running copies of one VM are never allowed (the DR workflows fence for it): a
        replica runs only once failed over to, its original not while its replica runs."""
        for obj in self.res.catalog.replication_objects():
            ref = f"{obj.plan} {obj.source.vm}"
            if (obj.replica.cluster, obj.replica.vm) == (at.cluster, at.vm) and obj.state not in REPLICA_RUNS:
                raise StateConflict(f"VM {at.cluster}/{at.vm} is the replica of {obj.source} in plan {obj.plan} "
                                    f"({obj.state}): it runs only after a failover (`abdr failover {ref}`; "
                                    f"a test copy: `abdr failover-test start {ref}`)")
            if (obj.source.cluster, obj.source.vm) == (at.cluster, at.vm) and obj.state in ORIGINAL_STAYS_OFF:
                raise StateConflict(f"VM {at.cluster}/{at.vm} failed over to {obj.replica} in plan {obj.plan} "
                                    f"({obj.state}): starting it would run two copies (`abdr failback {ref}`, "
                                    f"or `abdr failover undo {ref}`)")

    @activity.defn(name="admin_stop_vm")
    @translate_errors
    def stop_vm(self, req: VMStop) -> VM:
        """Ask the guest to shut down within the timeout, or with `force` power it off."""
        driver, vm_id = self.res.driver(req.cluster), self._vm_id(req)
        if req.force:
            return driver.power_off(vm_id)
        try:
            return driver.shutdown(vm_id, req.timeout_s)
        except OperationTimeout as e:
            # The guest had its time: retrying would only make the user wait three times as long.
            raise ApplicationError(f"{e}; `abdr vm stop --force` powers it off", type="OperationTimeout",
                                   non_retryable=True) from None

    @activity.defn(name="admin_export_disk")
    @translate_errors
    def export_disk(self, req: DiskExport) -> ExportedDisk:
        """A raw, sparse image of a disk: of a restore point's copy, or of the VM's disk as it
        is (stopped only: a running guest's disk read block by block would be torn). Written
        beside the file and renamed into place, so the file is whole or absent."""
        target = Path(req.path)
        if target.exists():
            raise InvalidRequest(f"{target} exists already: give the path of a new file")
        if not target.parent.is_dir():
            raise InvalidRequest(f"{target.parent} is not a directory on site {self.res.site!r}'s worker")
        partial = target.with_name(f".{target.name}.partial")
        written = 0
        try:
            with open(partial, "wb") as out:
                def write_at(offset: int, data: bytes) -> None:
                    nonlocal written
                    os.pwrite(out.fileno(), data, offset)
                    written += len(data)

                size = self._export_point(req, write_at) if req.point else self._export_live(req, write_at)
                out.truncate(size)  # the tail past the last data is a hole too
                out.flush()
                os.fsync(out.fileno())
            partial.rename(target)
        except OSError as e:
            raise path_refusal(target, e) from None
        finally:
            partial.unlink(missing_ok=True)
        return ExportedDisk(path=str(target), size_bytes=size, written_bytes=written)

    def _export_point(self, req: DiskExport, write_at: Any) -> int:
        catalog = self.res.catalog
        point = catalog.get_restore_point(req.point or "")
        if (point.cluster, point.vm) != (req.cluster, req.vm):
            raise InvalidRequest(f"restore point {point.id!r} is of {point.cluster}/{point.vm}, "
                                 f"not {req.cluster}/{req.vm}")
        repo = self.res.repository(catalog.get_repository(point.repository or "").path)
        if req.disk not in {d.name for d in repo.get_point(point.id).disks}:
            raise InvalidRequest(f"restore point {point.id!r} has no disk {req.disk!r}")
        return repo.restore_disk(point.id, req.disk, write_at, target_is_zero=True).bytes_total

    def _export_live(self, req: DiskExport, write_at: Any) -> int:
        driver, vm_id = self.res.driver(req.cluster), self._vm_id(req)
        vm = driver.get_vm(vm_id)
        if vm.power_state != PowerState.STOPPED:
            raise InvalidState(f"VM {req.cluster}/{req.vm} is {vm.power_state}: stop it first "
                               "(`abdr vm stop`), or export a restore point (--point)")
        disk = next((d for d in vm.config.disks if d.name == req.disk), None)
        if disk is None:
            raise InvalidRequest(f"VM {req.cluster}/{req.vm} has no disk {req.disk!r}")
        with driver.open_disk(vm_id, req.disk) as handle:
            for e in driver.allocated_extents(vm_id, req.disk):
                for off in range(e.offset, e.offset + e.length, EXPORT_READ):
                    write_at(off, handle.read(off, min(EXPORT_READ, e.offset + e.length - off)))
        return disk.size_bytes

    @activity.defn(name="admin_check_vms")
    @translate_errors
    def check_vms(self, p: dict) -> list[str]:
        """Every VM named exists on its cluster (a plan over a VM that is not there is refused)."""
        refs = [VMRef.model_validate(v) for v in p["vms"]]
        if len(refs) == 1:
            return [self.backup.vm_id(refs[0])]
        ids: dict[str, dict[str, str]] = {}  # a plan of thousands: one listing per cluster, not a lookup per VM
        for cluster in dict.fromkeys(ref.cluster for ref in refs):
            ids[cluster] = {vm.name: vm.id for vm in self.res.driver(cluster).list_vms()}
        missing = [ref for ref in refs if ref.vm not in ids[ref.cluster]]
        if missing:
            raise NotFound(f"VM {missing[0].vm!r} not found on cluster {missing[0].cluster!r}"
                           + (f" (and {len(missing) - 1} more VMs of the plan)" if len(missing) > 1 else ""))
        return [ids[ref.cluster][ref.vm] for ref in refs]

    @activity.defn(name="admin_delete_restore_points")
    @translate_errors
    def delete_restore_points(self, p: dict) -> DeletedPoints:
        catalog = self.res.catalog
        by_repo: dict[str, list[str]] = {}
        for pid in p["ids"]:
            point = catalog.get_restore_point(pid)
            by_repo.setdefault(point.repository or "", []).append(pid)
        for repo_name, ids in by_repo.items():
            repo = catalog.get_repository(repo_name)
            self.backup.delete_points(repo.path, ids)
        return DeletedPoints(deleted=p["ids"])

    @activity.defn(name="maintain_repository")
    @translate_errors
    def maintain_repository(self, inp: MaintenanceInput) -> MaintenanceResult:
        """Prune, verify (cross-checked with the catalog), GC. Progress goes out by elapsed
        time from inside each phase; the result is counts plus a bounded sample."""
        catalog = self.res.catalog
        spec = catalog.get_repository(inp.repository)
        repo = self.res.repository(spec.path)
        progress = Progress()
        out = MaintenanceResult(repository=inp.repository)
        if inp.prune:
            now = datetime.now(timezone.utc)
            pruned: list[str] = []
            for plan in catalog.list_backup_plans():
                if plan.repository == inp.repository:
                    progress.report(MaintenanceProgress(op="prune", phase=plan.name, done=len(pruned)))
                    expired = expired_points(catalog.list_restore_points(plan=plan.name), plan.retention, now)
                    self.backup.delete_points(spec.path, expired)
                    pruned += expired
            out.pruned_count, out.pruned_points = len(pruned), pruned[:FINDINGS_SAMPLE]
        if inp.verify:
            self._verify(repo, inp, out, progress)
        if inp.gc:
            gc = repo.gc(progress=progress.report, progress_interval=REPORT_S, iops=inp.read_iops)
            out.gc_removed_chunks, out.gc_removed_bytes = gc.swept_chunks, gc.swept_bytes
        return out

    def _verify(self, repo: Any, inp: MaintenanceInput, out: MaintenanceResult, progress: Progress) -> None:
        from drivers.repository.verify import findings, report_counts, write_report

        catalog = self.res.catalog
        live = {PointState.READY, PointState.DAMAGED}
        before = catalog.point_states(inp.repository)
        report = repo.verify(expected={p for p, st in before.items() if st in live}, progress=progress.report,
                             progress_interval=REPORT_S, read_iops=inp.read_iops, unknown_grace=UNKNOWN_GRACE_S)
        # Verify read the catalog first, then the repository; a point deleted (or recorded)
        # meanwhile is neither missing nor unknown: judge both against the catalog as it is now.
        after = catalog.point_states(inp.repository)
        report.missing_points = [p for p in report.missing_points if after.get(p) in live]
        report.unknown_points = [p for p in report.unknown_points if p not in after]
        write_report(repo, report)
        damaged = [p for p in report.damaged_points if after.get(p) in live]
        marked = [p for p in damaged if catalog.change_point_state(p, {PointState.READY}, PointState.DAMAGED)]
        whole = set(report.points_checked) - set(report.damaged_points)
        out.healed_points = sum(catalog.change_point_state(p, {PointState.DAMAGED}, PointState.READY)
                                for p in sorted(whole) if after.get(p) is PointState.DAMAGED)
        out.verified_points = len(report.points_checked)
        out.counts = report_counts(report)
        out.findings = sum(out.counts[k] for k in FINDING_COUNTS)
        out.damaged = [_bounded(f) for f in islice(findings(report), FINDINGS_SAMPLE)]
        out.damaged_points = damaged[:FINDINGS_SAMPLE]
        if marked:
            activity.logger.warning("repository %s: %d points marked DAMAGED", inp.repository, len(marked))


# Progress is only stored by a report (the heartbeat ticker sends the latest every few
# seconds), so reporting often costs nothing and keeps the details fresh.
REPORT_S = 1.0
# A backup commits its manifest, then records the point in the catalog: a manifest younger
# than this that the catalog lacks is being recorded, not unknown.
UNKNOWN_GRACE_S = 600.0
# The kinds of finding a verify reports (verify.report_counts keys), each one line of the report.
FINDING_COUNTS = ("missing_points", "unreadable_points", "unknown_points", "damaged_ranges")
DETAIL_CHARS = 300
# Where a replicated VM's copies may run: the replica once failed over to; the original
# not while its replica runs as it (failed over, or being failed back).
REPLICA_RUNS = frozenset({ReplicaState.FAILOVER, ReplicaState.PERMANENT_FAILOVER})
ORIGINAL_STAYS_OFF = frozenset({ReplicaState.FAILOVER, ReplicaState.FAILBACK})
EXPORT_READ = 4 << 20  # an export reads a disk's allocated extents this much at a time


def _bounded(finding: dict) -> dict:
    """A finding with its free text and digest list cut short: a sample stays a few KiB."""
    out = dict(finding)
    if isinstance(out.get("detail"), str) and len(out["detail"]) > DETAIL_CHARS:
        out["detail"] = out["detail"][:DETAIL_CHARS] + "..."
    if isinstance(out.get("digests"), list) and len(out["digests"]) > 4:
        out["digests"] = out["digests"][:4] + [f"... {len(out['digests']) - 4} more"]
    return out
