"""Backup plan runs. A plan's Temporal Schedule starts `BackupPlanTick`, which starts the
run under the plan's single workflow id `backup-plan/<plan>`: a manual run started while a
scheduled one is going (or the reverse) is refused by Temporal itself, never doubled."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models.jobs import (
        Operation,
        PlanResultInput,
        PlanRunInput,
        PlanRunResult,
        PlanTickInput,
        ResolvedPlan,
        VMBackupInput,
        VMBackupResult,
    )
    from models.plans import BackupDelayOption, RunResult
    from models.queues import WORKFLOW_TASK_QUEUE
    from models.restore_points import PointCreation
    from models.schedule import window_close

from workflows.backup import VMBackupWorkflow, failure_text
from workflows.common import SKIPPED_BUSY, catalog, phase, record_job, scheduled_time, start_plan_run, tag

def plan_run_id(plan: str) -> str:
    return f"backup-plan/{plan}"


def vm_backup_id(plan: str, cluster: str, vm: str) -> str:
    return f"backup/{plan}/{cluster}/{vm}"


def aggregate(results: list[VMBackupResult]) -> RunResult:
    ok = sum(r.ok for r in results)
    if results and ok == len(results):
        return RunResult.SUCCESS
    return RunResult.PARTIAL_SUCCESS if ok else RunResult.FAILED


@workflow.defn(name="BackupPlanTick")
class BackupPlanTickWorkflow:
    @workflow.run
    async def run(self, inp: PlanTickInput) -> PlanRunResult:
        tag(Operation.BACKUP_PLAN, plan=inp.plan, phase="tick")
        handle = await start_plan_run(BackupPlanRunWorkflow.run, PlanRunInput(plan=inp.plan, scheduled_at=scheduled_time()),
                                      plan_run_id(inp.plan), f"scheduled run of backup plan {inp.plan}")
        if handle is None:
            return PlanRunResult(plan=inp.plan, result=RunResult.RUNNING, skipped_reason=SKIPPED_BUSY)
        return await handle


@workflow.defn(name="BackupPlanRun")
class BackupPlanRunWorkflow:
    def __init__(self) -> None:
        self._done: list[VMBackupResult] = []
        self._total = 0

    @workflow.query
    def progress(self) -> dict:
        return {"vms_total": self._total, "vms_done": len(self._done),
                "results": [r.model_dump(mode="json") for r in self._done]}

    @workflow.run
    async def run(self, inp: PlanRunInput) -> PlanRunResult:
        tag(Operation.BACKUP_PLAN, plan=inp.plan, phase="resolve")
        plan: ResolvedPlan = await catalog("resolve_plan", inp, ResolvedPlan)
        now = workflow.now()
        closes = None
        if not inp.manual:
            if plan.paused:
                return PlanRunResult(plan=inp.plan, result=RunResult.PAUSED, skipped_reason="plan is paused")
            if plan.window is not None:
                closes = window_close(plan.window, plan.time_zone, now)
                if closes is None:
                    reason = f"skipped: {now:%H:%M} UTC is outside the window"
                    workflow.set_current_details(reason)
                    return PlanRunResult(plan=inp.plan, result=RunResult.NEVER_EXECUTE, skipped_reason=reason)
        stop_at_close = closes is not None and plan.delay_option == BackupDelayOption.STOP_BACKUP
        await record_job(Operation.BACKUP_PLAN, "RUNNING", plan=inp.plan)
        await catalog("set_plan_result", PlanResultInput(plan=inp.plan, result=RunResult.RUNNING, at=now))
        full = inp.full or plan.full_due
        full_reason = ("manual --full" if inp.full else "full backup schedule") if full else ""
        self._total = len(plan.vms)
        phase("backup", f"{len(plan.vms)} VMs, {plan.max_parallel} at a time"
              + (f", window closes {closes:%Y-%m-%d %H:%M} UTC" if closes else ""))
        gate = asyncio.Semaphore(plan.max_parallel)
        closing = False
        stamp = now.strftime("%Y%m%dT%H%M%SZ")

        async def one(index: int) -> VMBackupResult:
            rvm = plan.vms[index]
            if rvm.error:
                return VMBackupResult(vm=rvm.ref, ok=False, error=rvm.error)
            try:
                await gate.acquire()
            except asyncio.CancelledError:
                gate_cancelled = True
            else:
                gate_cancelled = False
            try:
                if closing or gate_cancelled:
                    return VMBackupResult(vm=rvm.ref, ok=False, cancelled=True,
                                          error="not started: the backup window closed")
                child = VMBackupInput(
                    plan=plan.plan, vm=rvm, repository=plan.repository, repository_path=plan.repository_path,
                    point_id=f"{rvm.ref.vm}.{stamp}.{workflow.uuid4().hex[:6]}",
                    creation=PointCreation.MANUAL if inp.manual else PointCreation.AUTO,
                    force_full=full, full_reason=full_reason, consistency=plan.consistency,
                    compression=plan.compression, retention=plan.retention, read_iops=plan.read_iops,
                    max_retries=plan.max_retries, retry_interval_s=plan.retry_interval_s)
                try:
                    h = await workflow.start_child_workflow(
                        VMBackupWorkflow.run, child, id=vm_backup_id(plan.plan, rvm.ref.cluster, rvm.ref.vm),
                        task_queue=WORKFLOW_TASK_QUEUE, id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                        static_summary=f"backup of {rvm.ref} for plan {plan.plan}")
                    result = await h
                except asyncio.CancelledError:
                    # The window closed: the child got a cancel request and has cleaned up
                    # (children wait for their cancellation to complete by default).
                    result = VMBackupResult(vm=rvm.ref, ok=False, cancelled=True, error="stopped at the window's end")
                except WorkflowAlreadyStartedError:
                    result = VMBackupResult(vm=rvm.ref, ok=False, error=f"a backup of {rvm.ref} is already running")
                except Exception as e:  # ChildWorkflowError: the VM's backup failed
                    result = VMBackupResult(vm=rvm.ref, ok=False, cancelled=closing,
                                            error="stopped at the window's end" if closing else failure_text(e))
                self._done.append(result)
                return result
            finally:
                if not gate_cancelled:
                    gate.release()

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(plan.vms))]
        everything = asyncio.ensure_future(asyncio.gather(*tasks))
        if stop_at_close:
            left = max(timedelta(0), closes - workflow.now())
            timer = asyncio.ensure_future(workflow.sleep(left, summary="backup window closes"))
            await workflow.wait([everything, timer], return_when=asyncio.FIRST_COMPLETED)
            if not everything.done():
                closing = True
                phase("window-closed", "stopping running backups and cleaning up")
                for t in tasks:
                    t.cancel()
            else:
                timer.cancel()
        results: list[VMBackupResult] = await everything
        outcome = aggregate(results)
        final = PlanRunResult(plan=inp.plan, result=outcome, vms=results)
        await catalog("set_plan_result", PlanResultInput(plan=inp.plan, result=outcome, at=workflow.now()))
        await record_job(Operation.BACKUP_PLAN, outcome.value, plan=inp.plan,
                         result=final.model_dump(mode="json"), finished=True)
        phase("done", outcome.value)
        return final
