"""Replication: plan ticks and runs (as for backup plans) and one VM's replication:
source snapshot -> the target pulls the changed extents (all allocated ones on the first
run) from the source site's transport -> replica snapshot = replica restore point -> the
new source snapshot becomes the base, the old one goes -> retention on replica points."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models.jobs import Operation, PlanResultInput, SnapshotRef
    from models.plans import RunResult, VMRef
    from models.queues import WORKFLOW_TASK_QUEUE
    from models.replication import ReplicaState, ReplicationObject
    from models.replication_jobs import (
        EnsureReplicaInput,
        ObjectRef,
        PullInput,
        ReplicaPointRecord,
        ReplicaRetentionInput,
        ReplicateInput,
        ReplicateResult,
        ReplicationRunInput,
        ReplicationRunResult,
        ReplicationTickInput,
        ResolvedObject,
        ResolvedReplicationPlan,
        VMAt,
    )
    from models.restore_points import PointCreation
    from models.schedule import window_close

from workflows import v1
from workflows.backup import failure_text
from workflows.common import (
    SKIPPED_BUSY,
    catalog,
    phase,
    record_job,
    scheduled_time,
    start_plan_run,
    tag,
    until_deadline,
)
from workflows.replica_state import claim, hold, me, release
from workflows.sites import Sites, refuse

ABORT_AT_WINDOW_END = "replication-abort-at-window-end"  # a timer at the window's end (abort_window_unfinished)
REPLICABLE = {ReplicaState.NOT_READY, ReplicaState.READY, ReplicaState.FAILOVER_TEST}


def replication_run_id(plan: str) -> str:
    return f"replication-plan/{plan}"


def replicate_id(plan: str, vm: str) -> str:
    return f"replication/{plan}/{vm}"


@workflow.defn(name="Replicate")
class ReplicateWorkflow:
    """Claim the replica, snapshot the source, pull the changes into the replica, snapshot
    the replica (the replica point), move the base pair on, let go. A failover's final sync
    runs under the failover's claim."""

    @workflow.run
    async def run(self, inp: ReplicateInput) -> ReplicateResult:
        spec = inp.spec
        sites = Sites(inp.max_retries, inp.retry_interval_s)
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=spec.name, vm=inp.vm), ResolvedObject)
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
            source.vm_id = await sites.call(src, "find_vm", obj.source, str, reach=timedelta(minutes=5))
            snap = await sites.snapshot(src, source, f"abdr-rep-{inp.point_id}", spec.consistency)
            replica_vm_id: str = await sites.call(tgt, "ensure_replica", EnsureReplicaInput(
                spec=spec, replica=obj.replica, source_config=snap.config, known_vm_id=obj.replica_vm_id), str)
            replica = VMAt(cluster=spec.target_cluster, vm_id=replica_vm_id)
            base = obj.source_snapshot if obj.replica_point else None
            phase("transfer", f"{'changes since the last point' if base else 'initial seed'} -> {obj.replica}")
            moved = await sites.pull(tgt, PullInput(
                remote_site=src, remote=source.model_copy(update={"snapshot_id": snap.snapshot_id}),
                remote_base=base, local=replica, bandwidth_mbps=inp.bandwidth_mbps, compression=spec.compression))
            phase("replica-point")
            rsnap = await sites.snapshot(tgt, replica, f"abdr-rp-{inp.point_id}", spec.consistency)
            now = workflow.now()
            await catalog("record_replica_point", ReplicaPointRecord(
                plan=spec.name, replica=obj.replica, point_id=inp.point_id, snapshot_id=rsnap.snapshot_id,
                creation=inp.creation, created_at=now, config=rsnap.config, logical_bytes=moved.disk_bytes,
                stored_bytes=moved.moved_bytes))
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
        await sites.call(tgt, "replica_retention", ReplicaRetentionInput(
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


@workflow.defn(name="ReplicationPlanTick")
class ReplicationPlanTickWorkflow:
    @workflow.run
    async def run(self, inp: ReplicationTickInput) -> ReplicationRunResult:
        tag(Operation.REPLICATION_PLAN, plan=inp.plan, phase="tick")
        handle = await start_plan_run(ReplicationPlanRunWorkflow.run,
                                      ReplicationRunInput(plan=inp.plan, scheduled_at=scheduled_time()),
                                      replication_run_id(inp.plan), f"scheduled run of replication plan {inp.plan}")
        if handle is None:
            return ReplicationRunResult(plan=inp.plan, result=RunResult.RUNNING, skipped_reason=SKIPPED_BUSY)
        return await handle


@workflow.defn(name="ReplicationPlanRun")
class ReplicationPlanRunWorkflow:
    def __init__(self) -> None:
        self._done: list[ReplicateResult] = []
        self._total = 0

    @workflow.query
    def progress(self) -> dict:
        return {"vms_total": self._total, "vms_done": len(self._done),
                "results": [r.model_dump(mode="json") for r in self._done]}

    @workflow.run
    async def run(self, inp: ReplicationRunInput) -> ReplicationRunResult:
        tag(Operation.REPLICATION_PLAN, plan=inp.plan, phase="resolve")
        abort_at = None
        closing = False  # the window closed: a child's failure is its cancellation
        plan: ResolvedReplicationPlan = await catalog("resolve_replication_plan", inp, ResolvedReplicationPlan)
        spec = plan.spec
        if not inp.manual:
            if plan.paused:
                return ReplicationRunResult(plan=inp.plan, result=RunResult.PAUSED, skipped_reason="plan is paused")
            closes = window_close(spec.window, spec.schedule.time_zone, workflow.now()) if spec.window else None
            if spec.window is not None and closes is None:
                return ReplicationRunResult(plan=inp.plan, result=RunResult.NEVER_EXECUTE,
                                            skipped_reason="skipped: outside the window")
            # abort_window_unfinished: runs still going when the window closes are stopped.
            if closes is not None and spec.abort_window_unfinished and workflow.patched(ABORT_AT_WINDOW_END):
                abort_at = closes
        await record_job(Operation.REPLICATION_PLAN, "RUNNING", plan=inp.plan)
        await catalog("set_replication_plan_result", PlanResultInput(plan=inp.plan, result=RunResult.RUNNING,
                                                                     at=workflow.now()))
        gate = asyncio.Semaphore(plan.max_jobs)
        stamp = workflow.now().strftime("%Y%m%dT%H%M%SZ")
        wanted = {v.vm for v in spec.vms}
        objects = [o for o in plan.objects if o.source.vm in wanted]
        phase("replicate", f"{len(objects)} VMs, {plan.max_jobs} at a time")

        self._total = len(objects)

        async def one(vm: str, source: VMRef) -> ReplicateResult:
            result = await replicate_one(vm, source)
            self._done.append(result)
            return result

        async def replicate_one(vm: str, source: VMRef) -> ReplicateResult:
            try:
                return await replicate_gated(vm, source)
            except asyncio.CancelledError:  # the window closed (the child has cleaned up)
                return ReplicateResult(vm=source, ok=False, error="stopped at the window's end")

        async def replicate_gated(vm: str, source: VMRef) -> ReplicateResult:
            async with gate:
                child = ReplicateInput(spec=spec, vm=vm, point_id=f"{vm}.r{stamp}.{workflow.uuid4().hex[:6]}",
                                       creation=PointCreation.MANUAL if inp.manual else PointCreation.AUTO,
                                       bandwidth_mbps=plan.bandwidth_mbps, max_retries=plan.max_retries,
                                       retry_interval_s=plan.retry_interval_s)
                try:
                    return await workflow.execute_child_workflow(
                        ReplicateWorkflow.run, child, id=replicate_id(spec.name, vm), task_queue=WORKFLOW_TASK_QUEUE,
                        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                        static_summary=f"replicate {source} -> {spec.target_cluster}")
                except WorkflowAlreadyStartedError:
                    return ReplicateResult(vm=source, ok=False, error=f"a replication of {source} is already running")
                except Exception as e:
                    return ReplicateResult(vm=source, ok=False,
                                           error="stopped at the window's end" if closing else failure_text(e))

        tasks = [asyncio.ensure_future(one(o.source.vm, o.source)) for o in objects]
        everything = asyncio.ensure_future(asyncio.gather(*tasks))
        if abort_at is not None and await until_deadline(everything, tasks, abort_at, "replication window closes"):
            closing = True
            phase("window-closed", "stopping running replications")
        results = list(await everything)
        ok = sum(r.ok for r in results)
        outcome = RunResult.SUCCESS if ok == len(results) else RunResult.PARTIAL_SUCCESS if ok else RunResult.FAILED
        final = ReplicationRunResult(plan=inp.plan, result=outcome, vms=results)
        await catalog("set_replication_plan_result", PlanResultInput(plan=inp.plan, result=outcome, at=workflow.now()))
        await record_job(Operation.REPLICATION_PLAN, outcome.value, plan=inp.plan,
                         result=final.model_dump(mode="json"), finished=True)
        phase("done", outcome.value)
        return final
