"""Backup activities of a site worker: prepare (full or incremental, and why), snapshot,
transfer (heartbeating; resumes from the repository's staging journal), cleanup, base
rotation and retention. Thin: the driver and the repository do the work."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone

from temporalio import activity

from activities.carry import carry_batch, unchanged_reason
from activities.catalog import point_summary, record_point
from activities.errors import translate_errors
from activities.heartbeat import Progress, resume_details
from activities.resources import Resources
from activities.slots import SlotRequest, TransferKind, holds_slot
from drivers.base import AlreadyExists, ClusterDriver, NotFound, full_read_reason
from drivers.ratelimit import limit_iops
from drivers.repository import Repository
from drivers.repository.errors import PointBusy, PointNotFound, RepositoryLocked
from drivers.repository.manifest import check_point_id
from models.activity_api import BackupApi
from models.inventory import Consistency, SnapshotInfo
from models.jobs import (
    AbandonBackupInput,
    BackupBase,
    CarryBatchInput,
    CarryBatchResult,
    CleanupInput,
    DiskTransferStats,
    FinishBackupInput,
    PrepareBackupInput,
    PrepareBackupResult,
    RetentionInput,
    SnapshotInput,
    SnapshotRef,
    TransferInput,
    TransferProgress,
    TransferResult,
)
from models.plans import VMRef
from models.restore_points import PointState, PointType
from models.retention import ExpiredPoints, expired_points

# Transfer progress is made durable (staging journal) this often: a killed worker loses at
# most this much work, and the heartbeat only ever reports durable progress.
CHECKPOINT_S = 2.0
# Adjacent chunks are read from the disk in requests of up to this size: a libvirt disk's
# every read is an NBD round trip (and a lock check); 1 MiB ones took the benchmark's reads
# of 1.2 GiB from 13.5 s to 5.4 s on a busy machine (9,921 requests -> 1,603).
READ_BYTES = 1 << 20
LOCK_WAIT_S = 60.0  # how long a point deletion waits for the repository's maintenance lock


class BackupActivities(BackupApi):
    def __init__(self, res: Resources) -> None:
        self.res = res

    def vm_id(self, vm: VMRef) -> str:
        found = self.res.driver(vm.cluster).find_vm(vm.vm)
        if found is None:
            raise NotFound(f"VM {vm.vm!r} not found on cluster {vm.cluster!r}")
        return found.id

    @activity.defn(name="find_vm")
    @translate_errors
    def find_vm(self, vm: VMRef) -> str:
        return self.vm_id(vm)

    @activity.defn(name="prepare_backup")
    @translate_errors
    def prepare_backup(self, inp: PrepareBackupInput) -> PrepareBackupResult:
        vm_id = self.vm_id(inp.vm)
        known = self.res.catalog.backup_base(inp.vm, inp.plan)
        base = BackupBase(point_id=known[0], snapshot_id=known[1]) if known else BackupBase()
        if inp.force_full:
            return PrepareBackupResult(vm_id=vm_id, type=PointType.FULL, reason=inp.full_reason, base=base)
        driver = self.res.driver(inp.vm.cluster)
        untracked = full_read_reason(driver)
        if known is None:
            reason = self.no_base_reason(inp.plan, inp.vm)
            return PrepareBackupResult(vm_id=vm_id, type=PointType.FULL,
                                       reason=f"{reason}; {untracked}" if untracked else reason)
        if untracked:  # an incremental would read every block anyway: say so, and depend on no base
            return PrepareBackupResult(vm_id=vm_id, type=PointType.FULL, reason=untracked, base=base)
        try:
            snap = driver.get_snapshot(vm_id, base.snapshot_id or "")
        except NotFound:
            reason = f"changed-block base snapshot {base.snapshot_id} is gone; tracking restarts with a full backup"
            return PrepareBackupResult(vm_id=vm_id, type=PointType.FULL, reason=reason,
                                       base=BackupBase(point_id=base.point_id))
        if inp.consistency is not None and snap.consistency == inp.consistency and unchanged_since(driver, vm_id, snap):
            return PrepareBackupResult(vm_id=vm_id, type=PointType.INCREMENTAL, base=base,
                                       reason=unchanged_reason(base.point_id),
                                       unchanged=SnapshotRef(cluster=inp.vm.cluster, vm_id=vm_id,
                                                             snapshot_id=snap.id, config=snap.config))
        return PrepareBackupResult(vm_id=vm_id, type=PointType.INCREMENTAL,
                                   reason=f"changes since point {base.point_id}", base=base)

    def no_base_reason(self, plan: str, vm: VMRef) -> str:
        """Why no point of the VM in the plan is a changed-block base: the truth, not "first"
        when older points exist. Only the newest point keeps its snapshot (each backup
        releases its base's), so older points left after it was deleted have none to build on."""
        catalog = self.res.catalog
        points = catalog.list_restore_points(plan=plan, vm=vm)  # oldest first
        if not points:
            return "first backup of this VM in the plan"
        newest = points[-1]
        if newest.state != PointState.READY and catalog.point_snapshot(newest.id):
            return f"the base point {newest.id} is {newest.state.value}: an incremental cannot build on it"
        return (f"the point that was this VM's changed-block base was deleted; {newest.id}, the newest point "
                "left, keeps no snapshot to build on, so tracking restarts with a full backup")

    @activity.defn(name="create_snapshot")
    @translate_errors
    def create_snapshot(self, inp: SnapshotInput) -> SnapshotRef:
        snap = take_snapshot(self.res.driver(inp.cluster), inp.vm_id, inp.name, inp.consistency)
        return SnapshotRef(cluster=inp.cluster, vm_id=inp.vm_id, snapshot_id=snap.id, config=snap.config)

    @activity.defn(name="transfer_backup")
    @translate_errors
    @holds_slot(lambda inp: SlotRequest(TransferKind.BACKUP, inp.snapshot.cluster, inp.plan))
    def transfer_backup(self, inp: TransferInput) -> TransferResult:
        resumed = resume_details(TransferProgress)
        if resumed is not None:
            activity.logger.info("resuming transfer of %s at disk %d chunk %d (%d bytes confirmed)",
                                 inp.point_id, resumed.disk_index, resumed.chunk_index, resumed.bytes_done)
        return self._transfer(inp, Progress().report)  # the writer reports only what its staging journal holds

    def _transfer(self, inp: TransferInput, report: Callable[[TransferProgress], None]) -> TransferResult:
        driver = self.res.driver(inp.snapshot.cluster)
        repo = self.res.repository(inp.repository_path)
        snap = inp.snapshot
        incremental = inp.type == PointType.INCREMENTAL
        base_point = repo.get_point(inp.base.point_id) if incremental and inp.base.point_id else None
        session = repo.begin_backup(vm_id=snap.vm_id, vm_config=snap.config, plan=inp.plan, creation=inp.creation,
                                    base_point=base_point.id if base_point else None, point_id=inp.point_id,
                                    created_at=inp.created_at)
        total = sum(d.size_bytes for d in snap.config.disks)
        done_before = 0
        stats: list[DiskTransferStats] = []
        try:
            for index, disk in enumerate(snap.config.disks):
                in_base = base_point is not None and any(d.name == disk.name for d in base_point.disks)
                extents = (
                    {"changed": driver.changed_extents(snap.vm_id, disk.name, inp.base.snapshot_id or "", snap.snapshot_id)}
                    if in_base else {"allocated": driver.allocated_extents(snap.vm_id, disk.name, snap.snapshot_id)})

                def progress(p: object, index: int = index, offset: int = done_before) -> None:
                    report(TransferProgress(disk_index=index, chunk_index=p.chunk_index,  # type: ignore[attr-defined]
                                                    bytes_done=offset + p.bytes_done, bytes_total=total))  # type: ignore[attr-defined]

                with driver.open_disk(snap.vm_id, disk.name, snap.snapshot_id) as handle:
                    writer = session.disk_writer(disk.name, disk.size_bytes, limit_iops(handle.read, inp.read_iops),
                                                 source_id=snap.snapshot_id, checkpoint_seconds=CHECKPOINT_S,
                                                 compress=inp.compression, read_bytes=READ_BYTES,
                                                 **extents)
                    dm = writer.run(progress)
                s = dm.stats
                stats.append(DiskTransferStats(disk=disk.name, size=disk.size_bytes, read_bytes=s.read_bytes,
                                               new_bytes=s.new_bytes, new_chunks=s.new_chunks,
                                               reused_chunks=s.reused_chunks, zero_chunks=s.zero_chunks,
                                               carried_chunks=s.carried_chunks, resumed_chunks=writer.resumed_at))
                done_before += disk.size_bytes
            point = session.commit()
        finally:
            session.close()  # keep staging (a retry resumes it); drop the lease
        meter = activity.metric_meter()
        meter.create_counter("abdr_backup_read_bytes", "bytes read from VM disks by backups", "By").add(
            sum(s.read_bytes for s in stats))
        meter.create_counter("abdr_backup_stored_bytes", "new bytes stored in repositories", "By").add(
            sum(s.new_bytes for s in stats))
        return TransferResult(point_id=point.id, disks=stats, logical_bytes=total,
                              stored_bytes=sum(s.new_bytes for s in stats))

    @activity.defn(name="cleanup_backup")
    @translate_errors
    def cleanup_backup(self, inp: CleanupInput) -> None:
        """Undo an unfinished backup: its snapshot and its staging files. A committed point
        is never touched (the transfer finished; only its recording did not)."""
        repo = self.res.repository(inp.repository_path)
        try:
            repo.get_point(inp.point_id)
            committed = True
        except PointNotFound:
            committed = False
        if not committed:
            shutil.rmtree(repo.layout.staging / check_point_id(inp.point_id), ignore_errors=True)
        if inp.snapshot_id and not committed:
            self._drop_snapshot(inp)

    @activity.defn(name="finish_backup")
    @translate_errors
    def finish_backup(self, inp: FinishBackupInput) -> None:
        """record_point, release_snapshot and apply_retention as one call: one round trip
        instead of three per VM. Each step is idempotent, so a retry redoes them safely."""
        record_point(self.res.catalog, inp.record)
        if inp.hand_over is not None:  # the snapshot is the new point's now: the old point only lets go of it
            self.res.catalog.release_point_snapshot(inp.hand_over)
        if inp.release is not None:
            self._release(inp.release)
        if inp.retention is not None:
            self._retention(inp.retention)

    @activity.defn(name="abandon_backup")
    @translate_errors
    def abandon_backup(self, inp: AbandonBackupInput) -> bool:
        """finish_backup gave up. If the catalog did not record the point, it now never will
        (`Catalog.abandon_point`, compare-and-set), and the point's files and its new snapshot
        go, as if the backup had not run; if it did, everything stays (the point is real, and
        the next backup builds on it). True when abandoned."""
        if not self.res.catalog.abandon_point(point_summary(inp.record)):
            return False
        c = inp.cleanup
        repo = self.res.repository(c.repository_path)
        if not remove_manifest(repo, c.point_id):
            raise PointBusy(f"restore point {c.point_id!r} is the base of a running backup: abandoned, "
                            "its files are left for a retry")
        shutil.rmtree(repo.layout.staging / check_point_id(c.point_id), ignore_errors=True)
        if c.snapshot_id:
            self._drop_snapshot(c)
        return True

    @activity.defn(name="carry_unchanged")
    @translate_errors
    def carry_unchanged(self, inp: CarryBatchInput) -> CarryBatchResult:
        """A page's VMs of this site: each unchanged one gets its point from its base
        snapshot here, as its child would (activities/carry.py); the rest get children."""
        return carry_batch(self, inp)

    @activity.defn(name="release_snapshot")
    @translate_errors
    def release_snapshot(self, inp: CleanupInput) -> None:
        self._release(inp)

    def _release(self, inp: CleanupInput) -> None:
        """The previous base is superseded: forget it in the catalog first, then delete it,
        so the catalog never names a snapshot that is gone."""
        if inp.point_id:
            self.res.catalog.release_point_snapshot(inp.point_id)
        self._drop_snapshot(inp)

    def _drop_snapshot(self, inp: CleanupInput) -> None:
        """Delete the snapshot `inp` names; one already gone (a retry) is no error."""
        try:
            self.res.driver(inp.cluster).delete_snapshot(inp.vm_id, inp.snapshot_id or "")
        except NotFound:
            pass

    @activity.defn(name="apply_retention")
    @translate_errors
    def apply_retention(self, inp: RetentionInput) -> ExpiredPoints:
        return self._retention(inp)

    def _retention(self, inp: RetentionInput) -> ExpiredPoints:
        catalog = self.res.catalog
        points = [p for p in catalog.list_restore_points(plan=inp.plan, vm=inp.vm)]
        expired = expired_points(points, inp.retention, datetime.now(timezone.utc))
        self.delete_points(inp.repository_path, expired)
        return ExpiredPoints.of(expired)

    def delete_points(self, repository_path: str, point_ids: list[str]) -> None:
        """Catalog DELETING -> manifest removed -> its changed-block snapshot deleted ->
        catalog row removed: a crash in between never leaves a READY point without its
        manifest, and a retry finds the snapshot gone (a DELETING row is nobody's base)."""
        catalog, repo = self.res.catalog, self.res.repository(repository_path)
        for pid in point_ids:
            catalog.set_point_state(pid, PointState.DELETING)
            if remove_manifest(repo, pid):
                self._delete_point_snapshot(pid)
                catalog.delete_restore_point(pid)
            else:  # the base of a backup running now: kept; the next retention pass takes it
                catalog.set_point_state(pid, PointState.READY)

    def _delete_point_snapshot(self, point_id: str) -> None:
        """The newest point of a VM keeps its snapshot as the next backup's base; without the
        point nothing builds on it, and left on the cluster it would grow with every write."""
        snapshot_id = self.res.catalog.point_snapshot(point_id)
        if not snapshot_id or self.res.catalog.snapshot_users(point_id):
            return  # none, or another point builds on it still
        point = self.res.catalog.get_restore_point(point_id)
        driver = self.res.driver(point.cluster)
        vm = driver.find_vm(point.vm)
        if vm is None:
            return  # the VM is gone, and its snapshots with it
        try:
            driver.delete_snapshot(vm.id, snapshot_id)
        except NotFound:
            pass


def take_snapshot(driver: ClusterDriver, vm_id: str, name: str, consistency: Consistency) -> SnapshotInfo:
    """The VM's snapshot of that name: taken now, or found (a retry after it was taken)."""
    try:
        return driver.create_snapshot(vm_id, name, consistency)
    except AlreadyExists:
        return next(s for s in driver.list_snapshots(vm_id) if s.name == name)


def unchanged_since(driver: ClusterDriver, vm_id: str, snap: SnapshotInfo) -> bool:
    """Whether the VM is as its snapshot holds it: the same config and no changed extent on
    any disk since (the driver's changed-block tracking, no data read)."""
    if driver.get_vm(vm_id).config != snap.config:
        return False
    return not any(driver.changed_extents(vm_id, d.name, snap.id, None) for d in snap.config.disks)


def remove_manifest(repo: Repository, point_id: str) -> bool:
    """Remove a point's manifest; False if it must stay (a running backup builds on it).
    Waits a little for the maintenance lock (another VM's short delete, or a GC), then
    leaves it to the activity's retry policy."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            repo.delete_point(point_id)
            return True
        except PointNotFound:
            return True
        except PointBusy:
            return False
        except RepositoryLocked:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
