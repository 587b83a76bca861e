"""A page's unchanged VMs in one site call (issue 13): for each VM of the batch, what its
VMBackup child would do when `prepare_backup` finds nothing changed since the base
snapshot: the transfer from the base snapshot (carries every chunk over, reads nothing),
then `finish_backup` (record the point, hand the snapshot over, retention). A VM the check
finds changed, or cannot decide, is left to a child workflow.

Idempotent under retry: each VM's point id is fixed by the workflow, so a retried batch
finds a point it recorded before and only redoes its (idempotent) hand-over and
retention; a point committed in the repository but not yet recorded is committed again to
the same manifest (`BackupSession.commit` is idempotent). Once a VM's transfer has begun,
its errors fail the batch (retried) and never hand the VM to a child, which would make a
second point of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import activity

from activities.batch import each_vm
from models.jobs import (
    CarriedVM,
    CarryBatchInput,
    CarryBatchResult,
    CarryVM,
    DiskTransferStats,
    FinishBackupInput,
    PrepareBackupInput,
    RecordPointInput,
    RetentionInput,
    TransferInput,
)

if TYPE_CHECKING:
    from activities.backup import BackupActivities


def carry_batch(acts: BackupActivities, inp: CarryBatchInput) -> CarryBatchResult:
    return CarryBatchResult(carried=each_vm(f"no-change batch of plan {inp.plan}", inp.vms,
                                            lambda item: carry_one(acts, inp, item), inp.deadline))


def carry_one(acts: BackupActivities, inp: CarryBatchInput, item: CarryVM) -> CarriedVM | None:
    """The VM's point from its base snapshot, or None when it needs a child workflow."""
    retention = RetentionInput(plan=inp.plan, vm=item.vm, repository=inp.repository,
                               repository_path=inp.repository_path, retention=inp.retention) \
        if inp.retention is not None else None
    links = acts.res.catalog.point_links(item.point_id)
    if links is not None:  # an earlier attempt recorded it: finish what it may not have
        base_id, snapshot_id = links
        base = acts.res.catalog.point_links(base_id) if base_id else None
        if base_id and snapshot_id and base is not None and base[1] == snapshot_id:
            acts.res.catalog.release_point_snapshot(base_id)  # the hand-over, if the kill came before it
        if retention is not None:
            acts._retention(retention)
        return CarriedVM(index=item.index, point_id=item.point_id, reason=unchanged_reason(base_id),
                         disks=manifest_stats(acts, inp.repository_path, item.point_id))
    try:
        prep = acts.prepare_backup(PrepareBackupInput(plan=inp.plan, vm=item.vm, force_full=False, full_reason="",
                                                      consistency=inp.consistency))
    except Exception as e:  # noqa: BLE001 - undecided: its child decides again and reports the error
        activity.logger.warning("no-change check of %s failed, left to its child: %s", item.vm, e)
        return None
    snap = prep.unchanged
    if snap is None:
        return None
    moved = acts._transfer(TransferInput(plan=inp.plan, point_id=item.point_id, repository_path=inp.repository_path,
                                         snapshot=snap, type=prep.type, creation=inp.creation, base=prep.base,
                                         compression=inp.compression, created_at=inp.created_at),
                           lambda _: None)  # reads nothing; the batch's own progress is what a retry needs
    record = RecordPointInput(
        plan=inp.plan, vm=item.vm, vm_config=snap.config, repository=inp.repository, point_id=item.point_id,
        type=prep.type, creation=inp.creation, created_at=inp.created_at, snapshot_id=snap.snapshot_id,
        base_point_id=prep.base.point_id, logical_bytes=moved.logical_bytes, stored_bytes=moved.stored_bytes)
    acts.finish_backup(FinishBackupInput(record=record, retention=retention, hand_over=prep.base.point_id))
    return CarriedVM(index=item.index, point_id=item.point_id, reason=prep.reason, disks=moved.disks)


def unchanged_reason(base_id: str | None) -> str:
    """The reason prepare_backup gives an unchanged VM (the same words in results either way)."""
    return f"nothing changed since point {base_id}"


def manifest_stats(acts: BackupActivities, repository_path: str, point_id: str) -> list[DiskTransferStats]:
    """A committed point's per-disk figures, as its transfer returned them."""
    point = acts.res.repository(repository_path).get_point(point_id)
    return [DiskTransferStats(disk=d.name, size=d.size, **d.stats.model_dump()) for d in point.disks]
