"""Frozen first versions of the backup and replication plan runs, kept so that runs started
before the shared skeleton (`workflow.patched(SKELETON)` is false for them: semaphore
fan-out, replication's empty run ending SUCCESS) replay and finish as they began. Nothing
new goes here; delete this module once no such run can remain (a plan run lasts at most
its window, or its VMs' backups and replications). Each function starts after the patch
check, the run's first step in both versions; `wf` is the run (its progress query)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import CatalogApi, ReplicationCatalogApi
    from models.ids import replicate_id, vm_backup_id
    from models.jobs import (
        Operation,
        PlanResultInput,
        PlanRunInput,
        PlanRunResult,
        ResolvedPlan,
        VMBackupInput,
        VMBackupResult,
    )
    from models.plans import BackupDelayOption, RunResult, VMRef
    from models.queues import WORKFLOW_TASK_QUEUE
    from models.replication_jobs import (
        ReplicateInput,
        ReplicateResult,
        ReplicationRunInput,
        ReplicationRunResult,
        ResolvedReplicationPlan,
    )
    from models.restore_points import PointCreation
    from models.schedule import window_close

from workflows.backup import VMBackupWorkflow, failure_text
from workflows.common import catalog, phase, record_job, tag, until_deadline
from workflows.replication import ReplicateWorkflow

ABORT_AT_WINDOW_END = "replication-abort-at-window-end"  # a timer at the window's end (abort_window_unfinished)


def aggregate(results: list[VMBackupResult]) -> RunResult:
    ok = sum(r.ok for r in results)
    if results and ok == len(results):
        return RunResult.SUCCESS
    return RunResult.PARTIAL_SUCCESS if ok else RunResult.FAILED


async def backup_plan_run(wf: Any, inp: PlanRunInput) -> PlanRunResult:
    tag(Operation.BACKUP_PLAN, plan=inp.plan, phase="resolve")
    plan: ResolvedPlan = await catalog(CatalogApi.resolve_plan, inp)
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
    await catalog(CatalogApi.set_plan_result, PlanResultInput(plan=inp.plan, result=RunResult.RUNNING, at=now))
    full = inp.full or plan.full_due
    full_reason = ("manual --full" if inp.full else "full backup schedule") if full else ""
    wf._total = len(plan.vms)
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
                result = VMBackupResult(vm=rvm.ref, ok=False, cancelled=True, error="stopped at the window's end")
            except WorkflowAlreadyStartedError:
                result = VMBackupResult(vm=rvm.ref, ok=False, error=f"a backup of {rvm.ref} is already running")
            except Exception as e:  # ChildWorkflowError: the VM's backup failed
                result = VMBackupResult(vm=rvm.ref, ok=False, cancelled=closing,
                                        error="stopped at the window's end" if closing else failure_text(e))
            wf._done.append(result)
            return result
        finally:
            if not gate_cancelled:
                gate.release()

    tasks = [asyncio.ensure_future(one(i)) for i in range(len(plan.vms))]
    everything = asyncio.ensure_future(asyncio.gather(*tasks))
    if stop_at_close:
        assert closes is not None
        left = max(timedelta(0), closes - workflow.now())
        timer: asyncio.Future[Any] = asyncio.ensure_future(workflow.sleep(left, summary="backup window closes"))
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
    await catalog(CatalogApi.set_plan_result, PlanResultInput(plan=inp.plan, result=outcome, at=workflow.now()))
    await record_job(Operation.BACKUP_PLAN, outcome.value, plan=inp.plan,
                     result=final.model_dump(mode="json"), finished=True)
    phase("done", outcome.value)
    return final


async def replication_plan_run(wf: Any, inp: ReplicationRunInput) -> ReplicationRunResult:
    tag(Operation.REPLICATION_PLAN, plan=inp.plan, phase="resolve")
    abort_at = None
    closing = False  # the window closed: a child's failure is its cancellation
    plan: ResolvedReplicationPlan = await catalog(ReplicationCatalogApi.resolve_replication_plan, inp)
    spec = plan.spec
    if not inp.manual:
        if plan.paused:
            return ReplicationRunResult(plan=inp.plan, result=RunResult.PAUSED, skipped_reason="plan is paused")
        closes = window_close(spec.window, spec.schedule.time_zone, workflow.now()) if spec.window else None
        if spec.window is not None and closes is None:
            return ReplicationRunResult(plan=inp.plan, result=RunResult.NEVER_EXECUTE,
                                        skipped_reason="skipped: outside the window")
        if closes is not None and spec.abort_window_unfinished and workflow.patched(ABORT_AT_WINDOW_END):
            abort_at = closes
    await record_job(Operation.REPLICATION_PLAN, "RUNNING", plan=inp.plan)
    await catalog(ReplicationCatalogApi.set_replication_plan_result,
                  PlanResultInput(plan=inp.plan, result=RunResult.RUNNING, at=workflow.now()))
    gate = asyncio.Semaphore(plan.max_jobs)
    stamp = workflow.now().strftime("%Y%m%dT%H%M%SZ")
    wanted = {v.vm for v in spec.vms}
    objects = [o for o in plan.objects if o.source.vm in wanted]
    phase("replicate", f"{len(objects)} VMs, {plan.max_jobs} at a time")
    wf._total = len(objects)

    async def one(vm: str, source: VMRef) -> ReplicateResult:
        result = await replicate_one(vm, source)
        wf._done.append(result)
        return result

    async def replicate_one(vm: str, source: VMRef) -> ReplicateResult:
        try:
            return await replicate_gated(vm, source)
        except asyncio.CancelledError:
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
    await catalog(ReplicationCatalogApi.set_replication_plan_result,
                  PlanResultInput(plan=inp.plan, result=outcome, at=workflow.now()))
    await record_job(Operation.REPLICATION_PLAN, outcome.value, plan=inp.plan,
                     result=final.model_dump(mode="json"), finished=True)
    phase("done", outcome.value)
    return final
