"""One VM's backup: snapshot -> full or incremental transfer (heartbeating, resumable) ->
commit the restore point -> keep the snapshot as the next base -> apply retention.
Cancelled (window closed) or failed: the new snapshot and partial files are removed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, CatalogApi, activity_name
    from models.jobs import (
        AbandonBackupInput,
        CleanupInput,
        FinishBackupInput,
        Operation,
        PrepareBackupInput,
        RecordPointInput,
        RetentionInput,
        SnapshotInput,
        SnapshotRef,
        TransferInput,
        VMBackupInput,
        VMBackupResult,
    )
    from models.queues import site_task_queue
    from models.restore_points import PointType

from workflows.common import A, R, catalog, phase, retry, tag

# Recording the point, releasing the old base and retention run as one site activity
# (finish_backup); runs before this marker ran three (record_point, release_snapshot, apply_retention).
FINISH_IN_ONE = "backup-finish-in-one"
# A VM unchanged since its base (prepare_backup says so) gets its point from the base
# snapshot: no create_snapshot, and the base point hands the snapshot to the new one.
SKIP_UNCHANGED = "backup-skip-unchanged"
# A backup whose finish_backup failed abandons its point unless the catalog recorded it
# (abandon_backup); runs before this marker left the point's files and snapshot, unrecorded.
ABANDON_UNRECORDED = "backup-abandons-an-unrecorded-point"
TRANSFER_HEARTBEAT = timedelta(seconds=10)  # the SDK sends at most every 8 s
# Every site activity heartbeats every few seconds (activities/heartbeat.py): a worker that
# dies is noticed after this, not after the activity's start-to-close timeout.
SITE_HEARTBEAT = timedelta(seconds=30)


@workflow.defn(name="VMBackup")
class VMBackupWorkflow:
    def __init__(self) -> None:
        self._phase = "starting"

    @workflow.query
    def current_phase(self) -> str:
        return self._phase

    def _enter(self, name: str, details: str = "") -> None:
        self._phase = name
        phase(name, details)

    @workflow.run
    async def run(self, inp: VMBackupInput) -> VMBackupResult:
        vm = inp.vm.ref
        queue = site_task_queue(inp.vm.site)
        policy = retry(inp.max_retries, inp.retry_interval_s)
        tag(Operation.BACKUP, plan=inp.plan, vm=str(vm), site=inp.vm.site)

        async def site(activity: Callable[[Any, A], R], arg: A, *,
                       start_to_close_timeout: timedelta = timedelta(minutes=10),
                       heartbeat_timeout: timedelta = SITE_HEARTBEAT) -> R:
            return await workflow.execute_activity_method(
                activity, arg, task_queue=queue, summary=f"{activity_name(activity)} {vm}",
                start_to_close_timeout=start_to_close_timeout, retry_policy=policy,
                heartbeat_timeout=heartbeat_timeout)

        self._enter("prepare")
        prep = await site(BackupApi.prepare_backup, PrepareBackupInput(plan=inp.plan, vm=vm, force_full=inp.force_full,
                                                                       full_reason=inp.full_reason,
                                                                       consistency=inp.consistency))
        if prep.type == PointType.FULL:
            workflow.logger.info("full backup of %s: %s", vm, prep.reason)
        # Nothing changed since the base: the base snapshot stands for the new point (the
        # transfer carries every chunk over, reading nothing), no snapshot taken or deleted.
        carried = prep.unchanged is not None and workflow.patched(SKIP_UNCHANGED)
        snap: SnapshotRef | None = None
        try:
            if carried:
                snap = prep.unchanged
            else:
                self._enter("snapshot")
                snap = await site(BackupApi.create_snapshot, SnapshotInput(cluster=vm.cluster, vm_id=prep.vm_id,
                                                                           name=f"abdr-{inp.point_id}",
                                                                           consistency=inp.consistency))
            assert snap is not None
            self._enter("transfer", f"{prep.type} backup of {vm} -> point {inp.point_id} ({prep.reason})")
            moved = await site(
                BackupApi.transfer_backup,
                TransferInput(plan=inp.plan, point_id=inp.point_id, repository_path=inp.repository_path,
                              snapshot=snap, type=prep.type, creation=inp.creation, base=prep.base,
                              compression=inp.compression, created_at=workflow.now(), read_iops=inp.read_iops),
                start_to_close_timeout=timedelta(hours=24), heartbeat_timeout=TRANSFER_HEARTBEAT)
        except BaseException as e:
            # Stop or failure before the point exists: leave nothing behind that looks like a backup.
            self._enter("cleanup")
            # A cancel request was consumed by the await that raised; this activity still runs.
            await site(BackupApi.cleanup_backup, CleanupInput(cluster=vm.cluster, vm_id=prep.vm_id,
                                                              snapshot_id=snap.snapshot_id if snap and not carried
                                                              else None,  # a carried base is never removed
                                                              repository_path=inp.repository_path,
                                                              point_id=inp.point_id))
            raise e
        self._enter("commit")
        record = RecordPointInput(
            plan=inp.plan, vm=vm, vm_config=snap.config, repository=inp.repository, point_id=inp.point_id, type=prep.type,
            creation=inp.creation, created_at=workflow.now(), snapshot_id=snap.snapshot_id,
            base_point_id=prep.base.point_id, logical_bytes=moved.logical_bytes, stored_bytes=moved.stored_bytes)
        release = CleanupInput(cluster=vm.cluster, vm_id=prep.vm_id, snapshot_id=prep.base.snapshot_id,
                               repository_path=inp.repository_path, point_id=prep.base.point_id or "") \
            if prep.base.snapshot_id and prep.base.snapshot_id != snap.snapshot_id else None
        retention = RetentionInput(plan=inp.plan, vm=vm, repository=inp.repository,
                                   repository_path=inp.repository_path, retention=inp.retention) \
            if inp.retention is not None else None
        if workflow.patched(FINISH_IN_ONE):
            try:
                await site(BackupApi.finish_backup, FinishBackupInput(record=record, release=release,
                                                                      retention=retention,
                                                                      hand_over=prep.base.point_id if carried else None))
            except BaseException:
                # Failed or stopped at its end: the point may or may not be recorded. The site
                # asks the catalog, compare-and-set: unrecorded, it is abandoned for good and its
                # files and new snapshot go; recorded, everything stays.
                if workflow.patched(ABANDON_UNRECORDED):
                    self._enter("cleanup")
                    await site(BackupApi.abandon_backup, AbandonBackupInput(record=record, cleanup=CleanupInput(
                        cluster=vm.cluster, vm_id=prep.vm_id, snapshot_id=None if carried else snap.snapshot_id,
                        repository_path=inp.repository_path, point_id=inp.point_id)))
                raise
        else:
            await catalog(CatalogApi.record_point, record)
            if release is not None:
                self._enter("rotate-base")
                await site(BackupApi.release_snapshot, release)
            if retention is not None:
                self._enter("retention")
                await site(BackupApi.apply_retention, retention)
        self._enter("done")
        return VMBackupResult(vm=vm, ok=True, point_id=inp.point_id, type=prep.type, full_reason=prep.reason,
                              disks=moved.disks)


def failure_text(err: BaseException) -> str:
    """The innermost message of a workflow/activity failure chain, for results and the CLI."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err.message if isinstance(err, ApplicationError) else str(err)
