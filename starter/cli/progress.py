"""Waiting on long work from the CLI: a rich progress bar of a plan run's VMs, or a
spinner, drawn on stderr so stdout keeps only the results. Ctrl-C stops the waiting,
never the workflow."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle

from models.jobs import PlanRunResult
from models.replication_jobs import ReplicationRunResult
from starter.cli.render import err_console
from starter.client import AbdrClient
from workflows.replication import replicate_id

POLL_S = 0.5
T = TypeVar("T")


async def plan_run_with_progress(client: AbdrClient, handle: WorkflowHandle, show: bool) -> PlanRunResult:
    """Await a BackupPlanRun's result; while it runs, show VMs done / total."""
    result = asyncio.ensure_future(client.plan_run_result(handle))
    if not show:
        return await result
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("VMs"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(f"backup plan {handle.id.split('/', 1)[-1]}", total=None)
        while not result.done():
            progress = await _query(handle)
            if progress is not None and progress.get("vms_total"):
                bar.update(task, total=progress["vms_total"], completed=progress["vms_done"])
            await asyncio.wait({result}, timeout=POLL_S)
        if not result.exception():
            done = len(result.result().vms)
            bar.update(task, total=max(done, 1), completed=done)
    return await result


async def _query(handle: WorkflowHandle) -> dict[str, Any] | None:
    try:
        return await asyncio.wait_for(handle.query("progress"), timeout=5)
    except Exception:  # not started yet, or between tasks: the next poll will tell
        return None


async def with_spinner(work: Awaitable[T], label: str, show: bool) -> T:
    if not show:
        return await work
    with err_console.status(label):
        return await work


async def replication_run_with_progress(client: AbdrClient, handle: WorkflowHandle, plan: str, vms: list[str],
                                        show: bool) -> ReplicationRunResult:
    """Await a ReplicationPlanRun's result; while it runs, show VMs done / total (a VM is
    done when its Replicate child of this run has closed)."""
    result = asyncio.ensure_future(client.result(handle))
    if not show:
        return await result
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("VMs"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(f"replication plan {plan}", total=len(vms) or None)
        while not result.done():
            done = await asyncio.gather(*(_child_closed(client, handle, plan, vm) for vm in vms))
            bar.update(task, completed=sum(done))
            await asyncio.wait({result}, timeout=POLL_S)
        if not result.exception():
            n = len(result.result().vms)
            bar.update(task, total=max(n, 1), completed=n)
    return await result


async def _child_closed(client: AbdrClient, parent: WorkflowHandle, plan: str, vm: str) -> bool:
    try:
        d = await asyncio.wait_for(client.client.get_workflow_handle(replicate_id(plan, vm)).describe(), timeout=5)
    except Exception:  # not started yet: the next poll will tell
        return False
    return (d.parent_id == parent.id and d.parent_run_id == parent.result_run_id
            and d.status not in (None, WorkflowExecutionStatus.RUNNING))
