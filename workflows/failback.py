"""Failback and permanent failover.

Failback brings the original VM to exactly the replica's state by moving only the extents
the replica changed since failover plus those the original changed after its last
replicated snapshot: a pre-sync while the replica still serves, then a short final sync
with the replica stopped; then the original starts and replication resumes in the
original direction from the new base pair (original snapshot, FAILBACK replica point).
The source site's worker does the writing (the source replication service's role)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.inventory import ShutdownMode
    from models.jobs import Operation, PowerInput, SnapshotInput, SnapshotRef
    from models.replication import ReplicaState
    from models.replication_jobs import (
        DrOperationResult,
        ObjectRef,
        PowerStateReply,
        PullInput,
        PullResult,
        ReplicaPointRecord,
        ResolvedObject,
        ShutdownInput,
        SnapshotDrop,
        VMAt,
    )
    from models.requests import FailbackRequest, PermanentFailoverRequest
    from models.restore_points import PointCreation

from workflows.common import catalog, phase, record_job, tag
from workflows.failover import refuse
from workflows.replication import Sites, change


@workflow.defn(name="Failback")
class FailbackWorkflow:
    @workflow.run
    async def run(self, req: FailbackRequest) -> DrOperationResult:
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=req.plan, vm=req.vm), ResolvedObject)
        spec, obj = r.spec, r.obj
        src, tgt = spec.source_site, spec.target_site
        tag(Operation.FAILBACK, plan=req.plan, vm=str(obj.source), site=src, phase="check")
        if obj.state != ReplicaState.FAILOVER:
            raise refuse(f"cannot fail back {obj.source}: its replica is {obj.state} (needs FAILOVER)")
        sites = Sites()
        original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        power: PowerStateReply = await sites.call(src, "power_state", original, PowerStateReply)
        if power.state == "RUNNING":
            raise refuse(f"cannot fail back: the original VM {obj.source} is running while its replica serves; "
                         "stop it first (two running copies of one VM are never allowed)", "SourceRunning")
        await change(req.plan, req.vm, ReplicaState.FAILBACK, "failback started")
        await record_job(Operation.FAILBACK, "RUNNING", plan=req.plan, vm=req.vm)
        stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
        bandwidth = r.failback_bandwidth_mbps
        try:
            phase("pre-sync", f"{obj.replica} (running) -> {obj.source}")
            s1: SnapshotRef = await sites.call(tgt, "create_snapshot", SnapshotInput(
                cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-fb1-{stamp}",
                consistency=spec.consistency), SnapshotRef)
            pre = await sites.pull(src, PullInput(
                remote_site=tgt, remote=replica.model_copy(update={"snapshot_id": s1.snapshot_id}),
                remote_base=obj.failover_snapshot, local=original, local_base=obj.source_snapshot,
                bandwidth_mbps=bandwidth))
            phase("final-sync", f"{obj.replica} stopped -> {obj.source}")
            await sites.call(tgt, "shutdown_vm", ShutdownInput(at=replica, mode=ShutdownMode.SHUTDOWN_WITH_POWEROFF,
                                                               timeout_s=120), PowerStateReply,
                             start_to_close_timeout=timedelta(minutes=5))
            s2: SnapshotRef = await sites.call(tgt, "create_snapshot", SnapshotInput(
                cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-fb2-{stamp}",
                consistency=spec.consistency), SnapshotRef)
            final: PullResult = await sites.pull(src, PullInput(
                remote_site=tgt, remote=replica.model_copy(update={"snapshot_id": s2.snapshot_id}),
                remote_base=s1.snapshot_id, local=original, bandwidth_mbps=bandwidth))
        except BaseException:
            await change(req.plan, req.vm, ReplicaState.FAILOVER, "failback failed: the replica keeps serving")
            raise
        phase("switch", f"{obj.source} takes over again")
        base: SnapshotRef = await sites.call(src, "create_snapshot", SnapshotInput(
            cluster=spec.source_cluster, vm_id=original.vm_id, name=f"abdr-rep-fb-{stamp}",
            consistency=spec.consistency), SnapshotRef)
        point_id = f"{req.vm}.fb{stamp}"
        await catalog("record_replica_point", ReplicaPointRecord(
            plan=req.plan, replica=obj.replica, point_id=point_id, snapshot_id=s2.snapshot_id,
            creation=PointCreation.FAILBACK, created_at=workflow.now(), config=s2.config,
            logical_bytes=final.disk_bytes, stored_bytes=pre.moved_bytes + final.moved_bytes))
        old_base = obj.source_snapshot
        obj = await change(req.plan, req.vm, ReplicaState.READY, f"failback done at point {point_id}",
                           source_snapshot=base.snapshot_id, replica_point=point_id, failover_snapshot=None,
                           last_point_at=workflow.now())
        await sites.call(tgt, "drop_snapshot", SnapshotDrop(at=replica.model_copy(update={"snapshot_id": s1.snapshot_id})))
        if old_base:
            await sites.call(src, "drop_snapshot", SnapshotDrop(at=original.model_copy(update={"snapshot_id": old_base})))
        if req.power_on:
            await sites.call(src, "set_power", PowerInput(cluster=spec.source_cluster, vm_id=original.vm_id, on=True))
        moved = pre.moved_bytes + final.moved_bytes
        result = DrOperationResult(operation="failback", plan=req.plan, vm=req.vm, state=obj.state, point_id=point_id,
                                   moved_bytes=moved, disk_bytes=final.disk_bytes,
                                   details={"pre_sync_bytes": pre.moved_bytes, "final_sync_bytes": final.moved_bytes,
                                            "wire_bytes": pre.wire_bytes + final.wire_bytes})
        await record_job(Operation.FAILBACK, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        phase("done", f"moved {moved} of {final.disk_bytes} bytes")
        return result


@workflow.defn(name="PermanentFailover")
class PermanentFailoverWorkflow:
    """The replica becomes the production VM; the replication relationship ends and the
    original leaves the plan. With `reprotect`, a reverse plan replicates the new production
    VM back onto the old original, its first sync a delta (the failback pre-sync's extents)."""

    @workflow.run
    async def run(self, req: PermanentFailoverRequest) -> DrOperationResult:
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=req.plan, vm=req.vm), ResolvedObject)
        spec, obj = r.spec, r.obj
        tag(Operation.PERMANENT_FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site)
        if obj.state != ReplicaState.FAILOVER:
            raise refuse(f"permanent failover of {obj.source} needs a failover first (replica is {obj.state})")
        details: dict = {}
        if req.reprotect:
            sites = Sites()
            phase("reprotect-seed", f"{obj.replica} -> {obj.source}")
            stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
            replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
            original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
            seed: SnapshotRef = await sites.call(spec.target_site, "create_snapshot", SnapshotInput(
                cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-rep-rp-{stamp}",
                consistency=spec.consistency), SnapshotRef)
            moved: PullResult = await sites.pull(spec.source_site, PullInput(
                remote_site=spec.target_site, remote=replica.model_copy(update={"snapshot_id": seed.snapshot_id}),
                remote_base=obj.failover_snapshot, local=original, local_base=obj.source_snapshot))
            rsnap: SnapshotRef = await sites.call(spec.source_site, "create_snapshot", SnapshotInput(
                cluster=spec.source_cluster, vm_id=original.vm_id, name=f"abdr-rp-rp-{stamp}",
                consistency=spec.consistency), SnapshotRef)
            reverse = await catalog("create_reverse_plan", ObjectRef(plan=req.plan, vm=req.vm), str)
            point_id = f"{obj.replica.vm}.rp{stamp}"
            await catalog("record_replica_point", ReplicaPointRecord(
                plan=reverse, replica=obj.source, point_id=point_id, snapshot_id=rsnap.snapshot_id,
                creation=PointCreation.MANUAL, created_at=workflow.now(), config=rsnap.config,
                logical_bytes=moved.disk_bytes, stored_bytes=moved.moved_bytes))
            await change(reverse, obj.replica.vm, ReplicaState.REPLICATING, "seeded by reprotect")
            await change(reverse, obj.replica.vm, ReplicaState.READY, "seeded by reprotect",
                         source_snapshot=seed.snapshot_id, replica_point=point_id, source_vm_id=replica.vm_id,
                         replica_vm_id=original.vm_id, last_point_at=workflow.now())
            details = {"reverse_plan": reverse, "seed_moved_bytes": moved.moved_bytes, "disk_bytes": moved.disk_bytes}
        obj = await change(req.plan, req.vm, ReplicaState.PERMANENT_FAILOVER, "permanent failover")
        await catalog("exclude_from_plan", ObjectRef(plan=req.plan, vm=req.vm))
        result = DrOperationResult(operation="permanent_failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   details=details)
        await record_job(Operation.PERMANENT_FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        return result
