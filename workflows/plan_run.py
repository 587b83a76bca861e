"""Backup plan runs. A plan's Temporal Schedule starts `BackupPlanTick`, which starts the
run under the plan's single workflow id `backup-plan/<plan>`: a manual run started while a
scheduled one is going (or the reverse) is refused by Temporal itself, never doubled. The
runbook is the shared one (workflows/plan_runs.py); backup adds its full-backup choice and
the window-close stop of `delay_option` STOP_BACKUP."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import CatalogApi
    from models.ids import plan_run_id, vm_backup_id
    from models.jobs import (
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
    from models.restore_points import PointCreation

from workflows import v1_plan_runs
from workflows.backup import VMBackupWorkflow
from workflows.common import catalog, scheduled_time
from workflows.plan_runs import SKELETON, Child, Gate, PlanRun, tick


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
