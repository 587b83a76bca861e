"""Replication plan runs, as for backup plans: the plan's schedule starts
`ReplicationPlanTick`, which starts the run under the plan's one id
`replication-plan/<plan>`; the runbook is the shared one (workflows/plan_runs.py), each VM
a `Replicate` child, and `abort_window_unfinished` stops the VMs still running at the
window's end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ReplicationApi, ReplicationCatalogApi
    from models.ids import replicate_id, replication_run_id
    from models.jobs import Operation, PlanResultInput
    from models.plans import RunResult, VMRef
    from models.replication import ReplicationObject
    from models.replication_jobs import (
        ReplicaCarryInput,
        ReplicaCarryVM,
        ReplicaCheckInput,
        ReplicaCheckVM,
        ReplicateInput,
        ReplicateResult,
        ReplicationRunInput,
        ReplicationRunResult,
        ReplicationTickInput,
        ResolvedReplicationPlan,
    )
    from models.restore_points import PointCreation

from workflows import v1_plan_runs
from workflows.backup import failure_text
from workflows.common import UNTIL_DONE, catalog, scheduled_time
from workflows.plan_runs import SKELETON, Child, Gate, PlanRun, batch_call, tick
from workflows.replication import ReplicateWorkflow

# A page's VMs whose source has not changed since their replica's base get their replica
# points from one site activity (activities/replica_carry.py), no child each. Runs before
# this marker started a Replicate child for every VM.
CARRY_REPLICAS = "replication-run-carry-unchanged"


@workflow.defn(name="ReplicationPlanTick")
class ReplicationPlanTickWorkflow:
    @workflow.run
    async def run(self, inp: ReplicationTickInput) -> ReplicationRunResult:
        return await tick(Operation.REPLICATION_PLAN, inp.plan, ReplicationPlanRunWorkflow.run,
                          ReplicationRunInput(plan=inp.plan, scheduled_at=scheduled_time()),
                          replication_run_id(inp.plan), "replication", ReplicationRunResult)


@workflow.defn(name="ReplicationPlanRun")
class ReplicationPlanRunWorkflow(
        PlanRun[ReplicationRunInput, ResolvedReplicationPlan, ReplicationObject, ReplicateResult]):
    operation = Operation.REPLICATION_PLAN
    noun = "replication"
    phase_name = "replicate"
    result_type = ReplicationRunResult

    @workflow.run
    async def run(self, inp: ReplicationRunInput) -> ReplicationRunResult:
        if not workflow.patched(SKELETON):
            return await v1_plan_runs.replication_plan_run(self, inp)
        return await self.execute(inp)

    async def resolve(self, inp: ReplicationRunInput) -> ResolvedReplicationPlan:
        return await catalog(ReplicationCatalogApi.resolve_replication_plan, inp)

    async def record_result(self, plan: str, result: RunResult, at: datetime) -> None:
        await catalog(ReplicationCatalogApi.set_replication_plan_result,
                      PlanResultInput(plan=plan, result=result, at=at))

    def gate(self, plan: ResolvedReplicationPlan) -> Gate:
        return Gate(paused=plan.paused, window=plan.spec.window, time_zone=plan.spec.schedule.time_zone,
                    max_jobs=plan.max_jobs)

    def stops_at_close(self, plan: ResolvedReplicationPlan) -> bool:
        # Every skeleton run postdates the "replication-abort-at-window-end" patch: no check here.
        return plan.spec.abort_window_unfinished

    def items(self, plan: ResolvedReplicationPlan) -> Sequence[ReplicationObject]:
        wanted = {v.vm for v in plan.spec.vms}
        return [o for o in plan.objects if o.source.vm in wanted]

    def page(self, plan: ResolvedReplicationPlan, offset: int, size: int) -> tuple[Sequence[ReplicationObject], int]:
        if plan.object_count is None:  # resolved whole (an activity of before pages)
            return super().page(plan, offset, size)
        return self.items(plan), plan.object_count  # resolve read only this page

    def vm(self, item: ReplicationObject) -> VMRef:
        return item.source

    def child(self, plan: ResolvedReplicationPlan, item: ReplicationObject, inp: ReplicationRunInput,
              stamp: str) -> Child:
        spec, vm = plan.spec, item.source.vm
        # the child gets the plan's settings and its own VM, not the page's VM list
        spec = spec.model_copy(update={"vms": [v for v in spec.vms if v.vm == vm]})
        arg = ReplicateInput(spec=spec, vm=vm, point_id=f"{vm}.r{stamp}.{workflow.uuid4().hex[:6]}",
                             creation=PointCreation.MANUAL if inp.manual else PointCreation.AUTO,
                             bandwidth_mbps=plan.bandwidth_mbps, max_retries=plan.max_retries,
                             retry_interval_s=plan.retry_interval_s)
        return Child(ReplicateWorkflow.run, arg, replicate_id(spec.name, vm),
                     f"replicate {item.source} -> {spec.target_cluster}")

    def failed(self, vm: VMRef, error: str, cancelled: bool) -> ReplicateResult:
        return ReplicateResult(vm=vm, ok=False, error=error)  # a replica point has no `cancelled`

    def carries(self, plan: ResolvedReplicationPlan, inp: ReplicationRunInput) -> bool:
        return workflow.patched(CARRY_REPLICAS)

    async def carry(self, plan: ResolvedReplicationPlan, children: Sequence[Child | str],
                    deadline: datetime | None) -> dict[int, ReplicateResult]:
        """The page's VMs whose source is unchanged since their replica's base get their
        replica points from one target-site activity; the rest get children."""
        return await self.site_batches(children, lambda c: plan.spec.target_site,
                                       partial(self._carry_site, plan, deadline), deadline)

    async def _carry_site(self, plan: ResolvedReplicationPlan, deadline: datetime | None, site: str,
                          group: list[tuple[int, Child]]) -> dict[int, ReplicateResult]:
        spec, args = plan.spec, {i: c for i, c in group}
        check = ReplicaCheckInput(plan=spec.name, consistency=spec.consistency,
                                  vms=[ReplicaCheckVM(index=i, vm=c.arg.vm) for i, c in group])
        found = await batch_call(ReplicationApi.check_sources_unchanged, check, spec.source_site,
                                 f"check_sources_unchanged: {len(group)} VMs of site {spec.source_site}",
                                 plan.max_retries, plan.retry_interval_s)
        if not found.unchanged or self._closing or (deadline is not None and workflow.now() >= deadline):
            return {}  # nothing to carry, or cancelled / the window closed meanwhile: not started
        batch = ReplicaCarryInput(
            plan=spec.name, creation=group[0][1].arg.creation, consistency=spec.consistency, deadline=deadline,
            vms=[ReplicaCarryVM(index=u.index, vm=args[u.index].arg.vm, point_id=args[u.index].arg.point_id,
                                owner=args[u.index].id, source_snapshot=u.source_snapshot) for u in found.unchanged])
        try:
            done = await batch_call(ReplicationApi.carry_replicas, batch, site,
                                    f"carry_replicas: {len(batch.vms)} VMs to site {site}",
                                    plan.max_retries, plan.retry_interval_s)
        except ActivityError as e:
            # Its retries spent, the batch may still hold claims (a killed worker runs no
            # undo): let them go, or those replicas stay REPLICATING and refuse every later
            # run and failover. Its VMs get no child in this run: a child with the batch's
            # point id would take the replica snapshot the batch made, found by its name, for
            # its own. The next run gives them new ids.
            await catalog(ReplicationCatalogApi.release_batch_claims, batch, retry_policy=UNTIL_DONE, local=False)
            why = f"no-change batch to site {site} failed: {failure_text(e)}"
            return {u.index: self.failed(VMRef(cluster=spec.source_cluster, vm=u.vm), why, False) for u in batch.vms}
        return {d.index: ReplicateResult(vm=VMRef(cluster=spec.source_cluster, vm=args[d.index].arg.vm), ok=True,
                                         point_id=d.point_id, disk_bytes=d.disk_bytes) for d in done.carried}
