"""Waiting on long work from the CLI: a rich progress bar of a plan run's VMs, or a
spinner, drawn on stderr so stdout keeps only the results. Ctrl-C stops the waiting,
never the workflow. The result is awaited as Temporal gives it (the SDK's long poll of the
workflow's close); the bar's polls run beside it and never hold the result back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from starter.cli.render import err_console

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from models.jobs import PlanRunResult
    from models.replication_jobs import ReplicationRunResult
    from starter.client import AbdrClient

POLL_S = 0.5
T = TypeVar("T")


class _Run(Protocol):
    @property
    def vms(self) -> Sequence[Any]: ...


R = TypeVar("R", bound=_Run)


async def plan_run_with_progress(client: AbdrClient, handle: WorkflowHandle, show: bool) -> PlanRunResult:
    """Await a BackupPlanRun's result; while it runs, show VMs done / total (its `progress` query)."""

    async def counts() -> tuple[int | None, int] | None:
        progress = await _query(handle)
        return (progress["vms_total"], progress["vms_done"]) if progress and progress.get("vms_total") else None

    return await _with_bar(client.plan_run_result(handle), f"backup plan {handle.id.split('/', 1)[-1]}", None,
                           counts, show)


async def replication_run_with_progress(client: AbdrClient, handle: WorkflowHandle, plan: str, vms: list[str],
                                        show: bool) -> ReplicationRunResult:
    """Await a ReplicationPlanRun's result; while it runs, show VMs done / total (a VM is
    done when its Replicate child of this run has closed)."""

    async def counts() -> tuple[int | None, int]:
        done = await asyncio.gather(*(_child_closed(client, handle, plan, vm) for vm in vms))
        return None, sum(done)

    return await _with_bar(client.plan_run_result(handle), f"replication plan {plan}", len(vms) or None, counts, show)


async def _with_bar(work: Awaitable[R], label: str, total: int | None,
                    counts: Callable[[], Awaitable[tuple[int | None, int] | None]], show: bool) -> R:
    """The one progress bar of both plan kinds: VMs done of total (a None total: unknown
    yet, or unchanged), polled while the run goes on, then the run's own count."""
    result = asyncio.ensure_future(work)
    if not show:
        return await result
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("VMs"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        while not result.done():
            poll = asyncio.ensure_future(counts())
            await asyncio.wait({result, poll}, return_when=asyncio.FIRST_COMPLETED)
            if not poll.done():  # the run ended first: its result is the count
                poll.cancel()
                break
            if (polled := poll.result()) is not None:
                bar.update(task, total=polled[0], completed=polled[1])
            await asyncio.wait({result}, timeout=POLL_S)
        if not result.exception():
            n = len(result.result().vms)
            bar.update(task, total=max(n, 1), completed=n)
    return await result


async def _query(handle: WorkflowHandle) -> dict[str, Any] | None:
    from workflows.plan_runs import PlanRun

    try:
        return await asyncio.wait_for(handle.query(PlanRun.progress), timeout=5)
    except Exception:  # not started yet, or between tasks: the next poll will tell
        return None


async def with_spinner(work: Awaitable[T], label: str, show: bool) -> T:
    if not show:
        return await work
    with err_console.status(label):
        return await work


async def _child_closed(client: AbdrClient, parent: WorkflowHandle, plan: str, vm: str) -> bool:
    from temporalio.client import WorkflowExecutionStatus

    from models.ids import replicate_id

    try:
        d = await asyncio.wait_for(client.client.get_workflow_handle(replicate_id(plan, vm)).describe(), timeout=5)
    except Exception:  # not started yet: the next poll will tell
        return False
    return (d.parent_id == parent.id and d.parent_run_id == parent.result_run_id
            and d.status not in (None, WorkflowExecutionStatus.RUNNING))
