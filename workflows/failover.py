"""Failover and undo-failover of one replicated VM. Runs on the target site's worker and
the central catalog, so it works with the source site down; with the source up it fences
the source first. Never two running copies: the source is checked before the replica
starts. Workflow id `dr/<plan>/<vm>`: one DR operation per VM at a time."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.inventory import ShutdownMode
    from models.jobs import Operation, PowerInput
    from models.replication import ReplicaState
    from models.replication_jobs import (
        DrOperationResult,
        ObjectRef,
        PointQuery,
        PowerStateReply,
        ReplicaPoint,
        ReplicateInput,
        ReplicateResult,
        ResolvedObject,
        ShutdownInput,
        VMAt,
    )
    from models.requests import NOW, FailoverRequest, UndoFailoverRequest
    from models.restore_points import PointCreation

from workflows.common import catalog, phase, record_job, tag
from workflows.replication import ReplicateWorkflow, Sites, change, replicate_id

PROBE = timedelta(seconds=20)  # how long a reachability check of the source may take


def dr_id(plan: str, vm: str) -> str:
    return f"dr/{plan}/{vm}"


def refuse(message: str, kind: str = "InvalidState") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


async def source_power(sites: Sites, r: ResolvedObject) -> PowerStateReply:
    """The source VM's power state, or unreachable (the source site's worker is down)."""
    if not r.obj.source_vm_id:
        return PowerStateReply(state="UNKNOWN", reachable=False)
    try:
        return await sites.call(r.spec.source_site, "power_state",
                                VMAt(cluster=r.spec.source_cluster, vm_id=r.obj.source_vm_id), PowerStateReply,
                                reach=PROBE, start_to_close_timeout=PROBE)
    except ActivityError:
        return PowerStateReply(state="UNKNOWN", reachable=False)


@workflow.defn(name="Failover")
class FailoverWorkflow:
    @workflow.run
    async def run(self, req: FailoverRequest) -> DrOperationResult:
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=req.plan, vm=req.vm), ResolvedObject)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="check")
        if obj.state not in (ReplicaState.READY, ReplicaState.FAILOVER_TEST):
            raise refuse(f"cannot fail over {obj.source}: its replica is {obj.state} (needs READY)")
        sites = Sites()
        await record_job(Operation.FAILOVER, "RUNNING", plan=req.plan, vm=req.vm)
        details: dict = {}
        if req.source_shutdown != ShutdownMode.NONE:
            phase("fence-source", f"{req.source_shutdown} {obj.source}")
            try:
                await sites.call(spec.source_site, "shutdown_vm", ShutdownInput(
                    at=VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or ""), mode=req.source_shutdown,
                    timeout_s=req.shutdown_timeout_s), PowerStateReply,
                    reach=timedelta(seconds=req.shutdown_timeout_s * 2 + 60),
                    start_to_close_timeout=timedelta(seconds=req.shutdown_timeout_s + 60))
            except ActivityError as e:
                raise refuse(f"failover aborted: the source VM {obj.source} could not be stopped "
                             f"({req.source_shutdown}): {e.cause or e}", "SourceNotStopped") from None
            details["source"] = f"stopped ({req.source_shutdown})"
        point_arg = req.point
        if req.point == NOW:
            phase("final-sync", f"{obj.source} -> {obj.replica}")
            synced: ReplicateResult = await workflow.execute_child_workflow(
                ReplicateWorkflow.run, ReplicateInput(spec=spec, vm=req.vm, creation=PointCreation.FAILOVER,
                                                      point_id=f"{req.vm}.fo{workflow.now():%Y%m%dT%H%M%SZ}"),
                id=replicate_id(spec.name, req.vm))
            point_arg = synced.point_id or ""
            details["final_sync_bytes"] = synced.moved_bytes
        point: ReplicaPoint = await catalog("find_replica_point", PointQuery(plan=req.plan, vm=req.vm, point=point_arg),
                                            ReplicaPoint)
        src = await source_power(sites, r)
        if src.reachable and src.state == "RUNNING":
            raise refuse(f"failover refused: the source VM {obj.source} is running; stop it or choose a "
                         "source_shutdown mode (two running copies of one VM are never allowed)", "SourceRunning")
        details.setdefault("source", "stopped" if src.reachable else "unreachable (not fenced)")
        phase("rollback", f"{obj.replica} -> point {point.point_id}")
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
        await sites.call(spec.target_site, "set_power", PowerInput(cluster=spec.target_cluster,
                                                                   vm_id=replica.vm_id, on=False))
        await sites.call(spec.target_site, "rollback_vm", replica)
        # From here the replica's changes are tracked against the point's snapshot (failback).
        obj = await change(req.plan, req.vm, ReplicaState.FAILOVER, f"failover to {point.point_id}",
                           failover_snapshot=point.snapshot_id)
        if req.power_on:
            phase("power-on", str(obj.replica))
            await sites.call(spec.target_site, "set_power", PowerInput(cluster=spec.target_cluster,
                                                                       vm_id=replica.vm_id, on=True))
        result = DrOperationResult(operation="failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   point_id=point.point_id, details=details)
        await record_job(Operation.FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        phase("done", f"{obj.replica} serves at point {point.point_id}")
        return result


@workflow.defn(name="UndoFailover")
class UndoFailoverWorkflow:
    """The replica returns to the newest replicated point (the base replication continues
    from); what it did during the failover is discarded."""

    @workflow.run
    async def run(self, req: UndoFailoverRequest) -> DrOperationResult:
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=req.plan, vm=req.vm), ResolvedObject)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="undo")
        if obj.state != ReplicaState.FAILOVER:
            raise refuse(f"nothing to undo: the replica of {obj.source} is {obj.state}, not FAILOVER")
        point: ReplicaPoint = await catalog("find_replica_point",
                                            PointQuery(plan=req.plan, vm=req.vm, point=obj.replica_point or ""),
                                            ReplicaPoint)
        sites = Sites()
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
        await sites.call(spec.target_site, "set_power", PowerInput(cluster=spec.target_cluster,
                                                                   vm_id=replica.vm_id, on=False))
        await sites.call(spec.target_site, "rollback_vm", replica)
        obj = await change(req.plan, req.vm, ReplicaState.READY, "failover undone", failover_snapshot=None)
        result = DrOperationResult(operation="undo_failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   point_id=point.point_id)
        await record_job(Operation.FAILOVER, "UNDONE", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        return result
