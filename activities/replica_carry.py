"""A replication page's unchanged VMs without a child workflow each (issue 13). What a
`Replicate` child (workflows/replication.py) does for a VM whose source has not changed
since its replica's base snapshot: it claims the replica (REPLICATING), snapshots the
source, pulls nothing, snapshots the replica (the replica point), records the point and
lets go (READY, the new point, its time as the RPO's last point), drops the old source
snapshot and applies retention. Here, in two site activities per page:

- `check_sources` (source site): each VM's source is as its base snapshot holds it (the
  driver's changed-block tracking from the base to the live disks and the same config, no
  data read; the base taken with the plan's consistency), so the base stands for the new
  source snapshot (nothing taken, nothing to drop) and there is nothing to pull.
- `carry_replicas` (target site): for each such VM, the claim, the replica snapshot, the
  point, the release and retention, as the child would, under the child's own claim owner.

Idempotent under retry: the point id and the owner are fixed in the workflow's input; a
retried batch finds a point it released before (only retention is redone), or its own
claim still held (it goes on from there); the replica snapshot is found by its name. A
VM that fails after its claim is let go again (READY, as the child's undo does) and fails
the batch (retried), so a child never finds it claimed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from temporalio import activity

from activities.backup import take_snapshot, unchanged_since
from activities.batch import each_vm
from activities.replication_catalog import add_replica_point
from drivers.base import ClusterDriver, NotFound, full_read_reason
from models.replication import REPLICABLE, ReplicaState, ReplicationObject
from models.replication_jobs import (
    CarriedReplica,
    Claim,
    ObjectChange,
    ReplicaCarryInput,
    ReplicaCarryResult,
    ReplicaCarryVM,
    ReplicaCheckInput,
    ReplicaCheckResult,
    ReplicaCheckVM,
    ReplicaPointRecord,
    ReplicaRetentionInput,
    UnchangedSource,
)
from models.restore_points import PointType

if TYPE_CHECKING:
    from activities.replication import ReplicationActivities


def check_sources(acts: ReplicationActivities, inp: ReplicaCheckInput) -> ReplicaCheckResult:
    return ReplicaCheckResult(unchanged=each_vm(f"no-change check of replication plan {inp.plan}", inp.vms,
                                                lambda item: source_unchanged(acts, inp, item)))


def source_unchanged(acts: ReplicationActivities, inp: ReplicaCheckInput, item: ReplicaCheckVM
                     ) -> UnchangedSource | None:
    """The VM's base snapshot, when its source has not changed since; None: its child replicates it."""
    try:
        obj = acts.res.catalog.replication_object(inp.plan, item.vm)
        if not carriable(obj) or obj.source_snapshot is None:
            return None
        driver = acts.res.driver(obj.source.cluster)
        if not is_vm(driver, obj.source_vm_id, obj.source.vm) or full_read_reason(driver):
            return None
        vm_id = obj.source_vm_id or ""
        snap = driver.get_snapshot(vm_id, obj.source_snapshot)
        if snap.consistency != inp.consistency or not unchanged_since(driver, vm_id, snap):
            return None
    except Exception as e:  # noqa: BLE001 - undecided: its child tries and reports the error
        activity.logger.warning("no-change check of %s failed, left to its child: %s", item.vm, e)
        return None
    return UnchangedSource(index=item.index, source_snapshot=snap.id)


def carriable(obj: ReplicationObject) -> bool:
    """A replica a run may sync, unclaimed, with a point and a base pair to build on."""
    return obj.state in REPLICABLE and obj.owner is None and bool(obj.replica_point and obj.replica_vm_id)


def is_vm(driver: ClusterDriver, vm_id: str | None, name: str) -> bool:
    """Whether the VM the catalog names by id is still there under its name: read by id, not
    found by name (a search reads the whole cluster's inventory, once per VM of the page)."""
    if not vm_id:
        return False
    try:
        return driver.get_vm(vm_id).config.name == name
    except NotFound:
        return False


def carry_replicas(acts: ReplicationActivities, inp: ReplicaCarryInput) -> ReplicaCarryResult:
    return ReplicaCarryResult(carried=each_vm(f"replica batch of replication plan {inp.plan}", inp.vms,
                                              lambda item: carry_one(acts, inp, item), inp.deadline))


def carry_one(acts: ReplicationActivities, inp: ReplicaCarryInput, item: ReplicaCarryVM) -> CarriedReplica | None:
    """The VM's replica point, as its Replicate child would make it, or None: left to the child."""
    catalog = acts.res.catalog
    obj = catalog.replication_object(inp.plan, item.vm)
    if obj.replica_point == item.point_id and obj.owner is None:  # released by an earlier attempt
        retention(acts, inp, obj)
        return CarriedReplica(index=item.index, point_id=item.point_id, disk_bytes=disk_bytes(acts, obj))
    if obj.owner != item.owner:  # else: our claim, taken by an earlier attempt
        if not carriable(obj) or obj.source_snapshot != item.source_snapshot:
            return None  # changed since the check: the child decides
        if not is_vm(acts.res.driver(obj.replica.cluster), obj.replica_vm_id, obj.replica.vm):
            return None  # the replica VM is gone or another: the child's ensure_replica deals with it
        busy = ReplicaState.REPLICATING if obj.state in (ReplicaState.READY, ReplicaState.NOT_READY) else None
        try:
            obj = change(acts, inp, item, "claim", to=busy, reason=f"run {item.point_id}", expect=list(REPLICABLE),
                         claim=Claim.TAKE)
        except Exception as e:  # noqa: BLE001 - a compare-and-set refused changes nothing: the child decides
            activity.logger.warning("claim of %s refused, left to its child: %s", obj.replica, e)
            return None
    done = ReplicaState.READY if obj.state == ReplicaState.REPLICATING else None  # a drill's state stays
    try:
        replica_vm_id = obj.replica_vm_id or ""
        snap = take_snapshot(acts.res.driver(obj.replica.cluster), replica_vm_id, f"abdr-rp-{item.point_id}",
                             inp.consistency)
        size = sum(d.size_bytes for d in snap.config.disks)
        add_replica_point(catalog, ReplicaPointRecord(
            plan=inp.plan, replica=obj.replica, point_id=item.point_id, snapshot_id=snap.id, creation=inp.creation,
            created_at=datetime.now(UTC), config=snap.config, logical_bytes=size, stored_bytes=0,
            type=PointType.INCREMENTAL))
        at = catalog.get_restore_point(item.point_id).created_at  # a retry's point keeps its first time
        obj = change(acts, inp, item, "release", to=done, reason=f"point {item.point_id}", claim=Claim.RELEASE,
                     updates={"replica_point": item.point_id}, last_point_at=at)
    except BaseException:
        try:  # let go as the child's undo does: a child of this VM must find it unclaimed
            change(acts, inp, item, "undo", to=done, reason="run failed", claim=Claim.RELEASE)
        except Exception as e:  # noqa: BLE001 - the retry goes on under the claim still held
            activity.logger.warning("replica %s left claimed for the batch's retry: %s", obj.replica, e)
        raise
    retention(acts, inp, obj)
    return CarriedReplica(index=item.index, point_id=item.point_id, disk_bytes=size)


def change(acts: ReplicationActivities, inp: ReplicaCarryInput, item: ReplicaCarryVM, step: str,
           **fields: Any) -> ReplicationObject:
    """One compare-and-set change of the replica under the child's owner (catalog history
    entries as the child's own changes make them)."""
    attempt = activity.info().attempt  # an undone attempt's claim must not stand for the next one's
    return acts.res.catalog.change_replication_object(ObjectChange(
        plan=inp.plan, vm=item.vm, at=datetime.now(UTC), owner=item.owner,
        change_id=f"{item.owner}/{item.point_id}/{step}/{attempt}", **fields))


def retention(acts: ReplicationActivities, inp: ReplicaCarryInput, obj: ReplicationObject) -> None:
    acts.replica_retention(ReplicaRetentionInput(plan=inp.plan, replica=obj.replica,
                                                 replica_vm_id=obj.replica_vm_id or "",
                                                 keep_snapshot=obj.replica_point))


def disk_bytes(acts: ReplicationActivities, obj: ReplicationObject) -> int:
    return sum(d.size_bytes for d in acts.res.catalog.point_config(obj.replica_point or "").disks)
