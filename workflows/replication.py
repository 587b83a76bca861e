"""One VM's replication (a replication plan's runs are in workflows/replication_plan.py):
source snapshot -> the target pulls the changed extents (all allocated ones on the first
run) from the source site's transport -> replica snapshot = replica restore point -> the
new source snapshot becomes the base, the old one goes -> retention on replica points."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, ReplicationApi, ReplicationCatalogApi
    from models.jobs import Operation, SnapshotRef
    from models.replication import REPLICABLE, ReplicaState, ReplicationObject
    from models.replication_jobs import (
        EnsureReplicaInput,
        ObjectRef,
        PullInput,
        ReplicaPointRecord,
        ReplicaRetentionInput,
        ReplicateInput,
        ReplicateResult,
        VMAt,
    )
    from models.restore_points import PointType

from workflows import v1
from workflows.backup import failure_text
from workflows.common import catalog, phase, tag
from workflows.replica_state import claim, hold, me, release
from workflows.sites import Sites, refuse


@workflow.defn(name="Replicate")
class ReplicateWorkflow:
    """Claim the replica, snapshot the source, pull the changes into the replica, snapshot
    the replica (the replica point), move the base pair on, let go. A failover's final sync
    runs under the failover's claim."""

    @workflow.run
    async def run(self, inp: ReplicateInput) -> ReplicateResult:
        spec = inp.spec
        sites = Sites(inp.max_retries, inp.retry_interval_s)
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=spec.name, vm=inp.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.replicate(inp, r, sites)
        obj = r.obj
        tag(Operation.REPLICATION, plan=spec.name, vm=str(obj.source), site=spec.target_site)
        owner = inp.claimed_by or me()
        # A drill runs beside replication: the replica stays FAILOVER_TEST, but is still claimed.
        was = obj.state
        busy = ReplicaState.REPLICATING if was in (ReplicaState.READY, ReplicaState.NOT_READY) else None
        try:
            if inp.claimed_by:
                obj = await hold(spec.name, inp.vm, reason=f"final sync {inp.point_id}", owner=owner)
            else:
                obj = await claim(spec.name, inp.vm, REPLICABLE, busy, f"run {inp.point_id}")
        except ActivityError as e:
            raise refuse(f"replication of {obj.source} not started: {failure_text(e)}", "StateConflict") from None
        src, tgt = spec.source_site, spec.target_site
        source = VMAt(cluster=spec.source_cluster, vm_id="")
        snap: SnapshotRef | None = None
        try:
            phase("snapshot", f"{obj.source} on site {src}")
            source.vm_id = await sites.call(src, BackupApi.find_vm, obj.source, reach=timedelta(minutes=5))
            snap = await sites.snapshot(src, source, f"abdr-rep-{inp.point_id}", spec.consistency)
            replica_vm_id = await sites.call(tgt, ReplicationApi.ensure_replica, EnsureReplicaInput(
                spec=spec, replica=obj.replica, source_config=snap.config, known_vm_id=obj.replica_vm_id))
            replica = VMAt(cluster=spec.target_cluster, vm_id=replica_vm_id)
            base = obj.source_snapshot if obj.replica_point else None
            phase("transfer", f"{'changes since the last point' if base else 'initial seed'} -> {obj.replica}")
            moved = await sites.pull(tgt, PullInput(
                remote_site=src, remote=source.model_copy(update={"snapshot_id": snap.snapshot_id}),
                remote_base=base, local=replica, bandwidth_mbps=inp.bandwidth_mbps, compression=spec.compression))
            phase("replica-point")
            rsnap = await sites.snapshot(tgt, replica, f"abdr-rp-{inp.point_id}", spec.consistency)
            now = workflow.now()
            await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
                plan=spec.name, replica=obj.replica, point_id=inp.point_id, snapshot_id=rsnap.snapshot_id,
                creation=inp.creation, created_at=now, config=rsnap.config, logical_bytes=moved.disk_bytes,
                stored_bytes=moved.moved_bytes, type=PointType.INCREMENTAL if base else PointType.FULL))
        except BaseException:
            if snap is not None:
                await sites.drop_snapshot(src, source, snap.snapshot_id)
            back = (ReplicaState.READY if obj.replica_point else ReplicaState.NOT_READY) if busy else None
            await let_go(spec.name, inp.vm, inp.claimed_by, back, "run failed", owner=owner)
            raise
        obj = await let_go(spec.name, inp.vm, inp.claimed_by, ReplicaState.READY if busy else None,
                           f"point {inp.point_id}", owner=owner, source_snapshot=snap.snapshot_id,
                           replica_point=inp.point_id, source_vm_id=source.vm_id, replica_vm_id=replica_vm_id,
                           last_point_at=now)
        if r.obj.source_snapshot and r.obj.source_snapshot != snap.snapshot_id:
            await sites.drop_snapshot(src, source, r.obj.source_snapshot)
        await sites.call(tgt, ReplicationApi.replica_retention, ReplicaRetentionInput(
            plan=spec.name, replica=obj.replica, replica_vm_id=replica_vm_id, keep_snapshot=inp.point_id))
        phase("done")
        return ReplicateResult(vm=obj.source, ok=True, point_id=inp.point_id, seeded=base is None,
                               moved_bytes=moved.moved_bytes, wire_bytes=moved.wire_bytes, disk_bytes=moved.disk_bytes)


async def let_go(plan: str, vm: str, parent: str | None, to: ReplicaState | None, reason: str, owner: str,
                 **updates: object) -> ReplicationObject:
    """End a replication: release its own claim, or keep the parent operation's."""
    if parent:
        return await hold(plan, vm, to, reason, owner=owner, **updates)
    return await release(plan, vm, to, reason, owner=owner, **updates)
