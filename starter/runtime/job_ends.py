"""How a workflow run really ended, read from Temporal: what a job row follows when its
workflow could not write its own end. Workflow code never sees its own termination or
timeout (and a failure may escape every handler), so listings reconcile unfinished rows
against `describe()` of their run, a bounded number per listing, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from models.jobs import JobEnd
from workflows.backup import failure_text

RECONCILE_AT_MOST = 100  # unfinished rows looked up per listing; the others wait for the next one
PARALLEL = 8  # describe() calls in flight at once

ENDS = {
    WorkflowExecutionStatus.COMPLETED: JobEnd.COMPLETED,
    WorkflowExecutionStatus.FAILED: JobEnd.FAILED,
    WorkflowExecutionStatus.CANCELED: JobEnd.CANCELLED,
    WorkflowExecutionStatus.TERMINATED: JobEnd.TERMINATED,
    WorkflowExecutionStatus.TIMED_OUT: JobEnd.TIMED_OUT,
    WorkflowExecutionStatus.CONTINUED_AS_NEW: JobEnd.CONTINUED_AS_NEW,
}
# Said when Temporal's failure carries no message (a cancel, a terminate without a reason).
PLAIN = {JobEnd.CANCELLED: "the run was cancelled", JobEnd.TERMINATED: "the run was terminated",
         JobEnd.TIMED_OUT: "the run timed out"}

RunKey = tuple[str, str]  # (workflow id, run id)


async def run_end(client: Client, workflow_id: str, run_id: str) -> tuple[JobEnd, str] | None:
    """(how the run ended, why) or None while it runs (or once Temporal has forgotten it)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        described = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:  # past the namespace's retention: nothing to say
            return None
        raise
    end = ENDS.get(described.status) if described.status else None
    if end == JobEnd.CONTINUED_AS_NEW:  # a plan run in pages: its row is under the chain's first run
        return await chain_end(client, workflow_id, run_id)
    if end is None or end == JobEnd.COMPLETED:
        return (end, "") if end else None
    try:
        await handle.result(follow_runs=False)  # reads the close event only
    except WorkflowFailureError as e:
        return end, failure_text(e) or PLAIN.get(end, "")
    return end, PLAIN.get(end, "")


async def chain_end(client: Client, workflow_id: str, first_run_id: str) -> tuple[JobEnd, str] | None:
    """How a continue-as-new chain ended: its latest run's end, if that run is of the chain
    (a later run under the same id is another job); None while the chain runs."""
    latest = await client.get_workflow_handle(workflow_id).describe()
    if latest.raw_description.workflow_execution_info.first_run_id != first_run_id:
        return JobEnd.CONTINUED_AS_NEW, ""  # the chain's runs are gone from Temporal: say what is known
    if latest.status == WorkflowExecutionStatus.RUNNING:
        return None
    return await run_end(client, workflow_id, latest.run_id)


async def run_ends(client: Client, runs: Iterable[RunKey]) -> dict[RunKey, tuple[JobEnd, str]]:
    """The ends of those of `runs` (the first RECONCILE_AT_MOST) that have ended."""
    wanted = list(runs)[:RECONCILE_AT_MOST]
    gate = asyncio.Semaphore(PARALLEL)

    async def one(key: RunKey) -> tuple[JobEnd, str] | None:
        async with gate:
            return await run_end(client, *key)

    found = await asyncio.gather(*(one(k) for k in wanted))
    return {k: end for k, end in zip(wanted, found) if end is not None}
