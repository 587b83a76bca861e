"""Backup plan runs. A plan's Temporal Schedule starts `BackupPlanTick`, which starts the
run under the plan's single workflow id `backup-plan/<plan>`: a manual run started while a
scheduled one is going (or the reverse) is refused by Temporal itself, never doubled. The
runbook is the shared one (workflows/plan_runs.py); backup adds its full-backup choice and
the window-close stop of `delay_option` STOP_BACKUP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, CatalogApi
    from models.ids import plan_run_id, vm_backup_id
    from models.jobs import (
        CarryBatchInput,
        CarryVM,
        Operation,
        PlanResultInput,
        PlanRunInput,
        PlanRunResult,
        PlanTickInput,
        ResolvedPlan,
        ResolvedVM,
        VMBackupInput,
        VMBackupResult,
    )
    from models.plans import BackupDelayOption, RunResult, VMRef
    from models.restore_points import PointCreation, PointType

from workflows import v1_plan_runs
from workflows.backup import VMBackupWorkflow
from workflows.common import catalog, scheduled_time
from workflows.plan_runs import SKELETON, Child, Gate, PlanRun, batch_call, tick


@workflow.defn(name="BackupPlanTick")
class BackupPlanTickWorkflow:
    @workflow.run
    async def run(self, inp: PlanTickInput) -> PlanRunResult:
        return await tick(Operation.BACKUP_PLAN, inp.plan, BackupPlanRunWorkflow.run,
                          PlanRunInput(plan=inp.plan, scheduled_at=scheduled_time()), plan_run_id(inp.plan),
                          "backup", PlanRunResult)


@workflow.defn(name="BackupPlanRun")
class BackupPlanRunWorkflow(PlanRun[PlanRunInput, ResolvedPlan, ResolvedVM, VMBackupResult]):
    operation = Operation.BACKUP_PLAN
    noun = "backup"
    phase_name = "backup"
    result_type = PlanRunResult

    @workflow.run
    async def run(self, inp: PlanRunInput) -> PlanRunResult:
        if not workflow.patched(SKELETON):
            return await v1_plan_runs.backup_plan_run(self, inp)
        return await self.execute(inp)

    async def resolve(self, inp: PlanRunInput) -> ResolvedPlan:
        return await catalog(CatalogApi.resolve_plan, inp)

    async def record_result(self, plan: str, result: RunResult, at: datetime) -> None:
        await catalog(CatalogApi.set_plan_result, PlanResultInput(plan=plan, result=result, at=at))

    def gate(self, plan: ResolvedPlan) -> Gate:
        return Gate(paused=plan.paused, window=plan.window, time_zone=plan.time_zone, max_jobs=plan.max_parallel)

    def stops_at_close(self, plan: ResolvedPlan) -> bool:
        return plan.delay_option == BackupDelayOption.STOP_BACKUP

    def items(self, plan: ResolvedPlan) -> Sequence[ResolvedVM]:
        return plan.vms

    def page(self, plan: ResolvedPlan, offset: int, size: int) -> tuple[Sequence[ResolvedVM], int]:
        if plan.vm_count is None:  # resolved whole (an activity of before pages)
            return super().page(plan, offset, size)
        return plan.vms, plan.vm_count  # resolve_plan read only this page

    def vm(self, item: ResolvedVM) -> VMRef:
        return item.ref

    def child(self, plan: ResolvedPlan, item: ResolvedVM, inp: PlanRunInput, stamp: str) -> Child | str:
        if item.error:  # e.g. its cluster is unknown: that VM fails, not the run
            return item.error
        full = inp.full or plan.full_due
        arg = VMBackupInput(
            plan=plan.plan, vm=item, repository=plan.repository, repository_path=plan.repository_path,
            point_id=f"{item.ref.vm}.{stamp}.{workflow.uuid4().hex[:6]}",
            creation=PointCreation.MANUAL if inp.manual else PointCreation.AUTO,
            force_full=full, full_reason=("manual --full" if inp.full else "full backup schedule") if full else "",
            consistency=plan.consistency, compression=plan.compression, retention=plan.retention,
            read_iops=plan.read_iops, max_retries=plan.max_retries, retry_interval_s=plan.retry_interval_s)
        return Child(VMBackupWorkflow.run, arg, vm_backup_id(plan.plan, item.ref.cluster, item.ref.vm),
                     f"backup of {item.ref} for plan {plan.plan}")

    def failed(self, vm: VMRef, error: str, cancelled: bool) -> VMBackupResult:
        return VMBackupResult(vm=vm, ok=False, error=error, cancelled=cancelled)

    def carries(self, plan: ResolvedPlan, inp: PlanRunInput) -> bool:
        return not (inp.full or plan.full_due)  # a full backup reads every VM: each its child

    async def carry(self, plan: ResolvedPlan, children: Sequence[Child | str],
                    deadline: datetime | None) -> dict[int, VMBackupResult]:
        """The page's unchanged VMs get their points from one site activity per site, in
        turn (one VM at a time: within any job limit); the rest get children."""
        return await self.site_batches(children, lambda c: c.arg.vm.site, partial(self._carry_site, plan, deadline),
                                       deadline)

    async def _carry_site(self, plan: ResolvedPlan, deadline: datetime | None, site: str,
                          group: list[tuple[int, Child]]) -> dict[int, VMBackupResult]:
        args: list[tuple[int, VMBackupInput]] = [(i, c.arg) for i, c in group]
        batch = CarryBatchInput(
            plan=plan.plan, repository=plan.repository, repository_path=plan.repository_path,
            creation=args[0][1].creation, consistency=plan.consistency, compression=plan.compression,
            retention=plan.retention, created_at=workflow.now(), deadline=deadline,
            vms=[CarryVM(index=i, vm=a.vm.ref, point_id=a.point_id) for i, a in args])
        done = await batch_call(BackupApi.carry_unchanged, batch, site, f"carry_unchanged: {len(args)} VMs of site {site}",
                                plan.max_retries, plan.retry_interval_s)
        refs = {i: a.vm.ref for i, a in args}
        return {d.index: VMBackupResult(vm=refs[d.index], ok=True, point_id=d.point_id, type=PointType.INCREMENTAL,
                                        full_reason=d.reason, disks=d.disks) for d in done.carried}
