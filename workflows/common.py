"""Shared workflow plumbing: activity options from a service's limits, search attributes,
and the job record every operation writes. Deterministic; imports only temporalio + models."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributeUpdate, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, CancelledError, FailureError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from models import search_attributes as sa
    from models.activity_api import CatalogApi, activity_name
    from models.errors import non_retryable_types
    from models.jobs import JobRecord, Operation
    from models.queues import WORKFLOW_TASK_QUEUE

# Errors no retry can fix (models/errors.py's catalogue): activities raise them as ApplicationError(type=...).
NON_RETRYABLE = non_retryable_types()


def retry(max_retries: int = 3, interval_s: int = 30) -> RetryPolicy:
    return RetryPolicy(initial_interval=timedelta(seconds=interval_s), backoff_coefficient=2.0,
                       maximum_interval=timedelta(seconds=interval_s * 8), maximum_attempts=max_retries + 1,
                       non_retryable_error_types=NON_RETRYABLE)


# Bookkeeping that must follow a decision already made (the replica is production): tried
# until it succeeds, each wait at most a minute, the pending attempt visible in the Web UI.
UNTIL_DONE = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                         maximum_interval=timedelta(seconds=60), maximum_attempts=0,
                         non_retryable_error_types=NON_RETRYABLE)


A = TypeVar("A")  # an activity's argument
R = TypeVar("R")  # and its result, both read from its interface method (models/activity_api.py)

# Catalog activities heartbeat too (the worker's ticker), so a dead worker costs 30 s, not 2 min.
CATALOG_TIMEOUT, CATALOG_HEARTBEAT, CATALOG_RETRY = timedelta(minutes=2), timedelta(seconds=30), retry(5, 1)


async def as_activity_failure(name: str, call: Awaitable[R]) -> R:
    """A local activity's result; its failure in the shape a normal activity's has, an
    ActivityError caused by what the activity raised, which the runbooks' handlers catch:
    the SDK raises a local activity's failure bare (the ApplicationError or TimeoutError
    itself; seen on the dev and the test server). A cancel stays a cancel."""
    try:
        return await call
    except CancelledError:
        raise
    except FailureError as e:
        raise ActivityError(f"local activity {name} failed", scheduled_event_id=0, started_event_id=0, identity="",
                            activity_type=name, activity_id="", retry_state=None) from e


# New runs call the catalog as local activities: run by the orchestration worker that runs
# the workflow (the catalog's activities live there), one marker event each instead of a
# task-queue round trip through Temporal (scheduled, started, completed): at 200 failovers at
# once those round trips were most of the dev server's work (docs/scale.md). Runs recorded
# before it replay their activities.
LOCAL_CATALOG = "catalog-calls-are-local-activities"


@overload
async def catalog(activity: Callable[[Any, A], Awaitable[R]], arg: A, summary: str | None = None,
                  retry_policy: RetryPolicy = CATALOG_RETRY, local: bool = True) -> R: ...
@overload
async def catalog(activity: Callable[[Any, A], R], arg: A, summary: str | None = None,
                  retry_policy: RetryPolicy = CATALOG_RETRY, local: bool = True) -> R: ...
async def catalog(activity: Callable[[Any, Any], Any], arg: Any, summary: str | None = None,
                  retry_policy: RetryPolicy = CATALOG_RETRY, local: bool = True) -> Any:
    """Run a catalog activity (they live on the workflow queue: the catalog is central, and
    they must work while a site is down), e.g. `catalog(CatalogApi.record_job, job)`; as a
    local activity unless `local` is False (a call that may run long, e.g. a batch's claims,
    stays a normal activity, visible while pending and heartbeating)."""
    summary = summary or activity_name(activity)
    if local and workflow.patched(LOCAL_CATALOG):
        return await as_activity_failure(summary, workflow.execute_local_activity_method(
            activity, arg, summary=summary, start_to_close_timeout=CATALOG_TIMEOUT, retry_policy=retry_policy))
    return await workflow.execute_activity_method(
        activity, arg, task_queue=WORKFLOW_TASK_QUEUE, summary=summary,
        start_to_close_timeout=CATALOG_TIMEOUT, heartbeat_timeout=CATALOG_HEARTBEAT, retry_policy=retry_policy)


SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
SKIPPED_BUSY = "skipped: the previous run of this plan is still running"


def scheduled_time() -> Any:
    """When the schedule meant this run to start (now, for a run nobody scheduled)."""
    return workflow.info().typed_search_attributes.get(SCHEDULED_START) or workflow.now()


async def start_plan_run(run: Any, arg: Any, wf_id: str, summary: str) -> Any:
    """Start a plan's run under the plan's one workflow id; None while a run is going (the
    due run is skipped, not queued: ABDR's rule, and Temporal's id uniqueness enforces it)."""
    try:
        return await workflow.start_child_workflow(run, arg, id=wf_id, task_queue=WORKFLOW_TASK_QUEUE,
                                                   id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                                                   static_summary=summary)
    except WorkflowAlreadyStartedError:
        workflow.set_current_details(SKIPPED_BUSY)
        return None


def tag(operation: Operation, *, plan: str | None = None, vm: str | None = None, site: str | None = None,
        phase: str | None = None) -> None:
    updates: list[SearchAttributeUpdate] = [sa.OPERATION.value_set(operation.value)]
    for key, value in ((sa.PLAN, plan), (sa.VM, vm), (sa.SITE, site), (sa.PHASE, phase)):
        if value is not None:
            updates.append(key.value_set(value))
    workflow.upsert_search_attributes(updates)
    if phase is not None:  # readable from the first phase on (current details are no command: replay-safe)
        workflow.set_current_details(f"**{phase}**")


def phase(name: str, details: str = "") -> None:
    """Move the run to a new phase: search attribute (filterable) + current details (readable)."""
    workflow.upsert_search_attributes([sa.PHASE.value_set(name)])
    workflow.set_current_details(f"**{name}** {details}".strip())


async def record_job(operation: Operation, status: str, *, plan: str | None = None, vm: str | None = None,
                     result: dict | None = None, finished: bool = False, run_id: str | None = None) -> None:
    """The run's job row; `run_id`: a continue-as-new chain's first run (its rows live there)."""
    info = workflow.info()
    await catalog(CatalogApi.record_job, JobRecord(workflow_id=info.workflow_id, run_id=run_id or info.run_id,
                                                   operation=operation, status=status, plan=plan, vm=vm,
                                                   result=result, finished=finished))


async def before_deadline(work: asyncio.Future[Any], deadline: datetime, summary: str) -> bool:
    """Wait for `work` or `deadline` (a durable timer), whichever comes first; True if the
    work finished first. A plan's window end."""
    left = max(timedelta(0), deadline - workflow.now())
    timer = asyncio.ensure_future(workflow.sleep(left, summary=summary))
    await workflow.wait([work, timer], return_when=asyncio.FIRST_COMPLETED)
    if work.done():
        timer.cancel()
        return True
    return False


async def until_deadline(work: asyncio.Future[Any], tasks: Sequence[asyncio.Future[Any]], deadline: datetime,
                         summary: str) -> bool:
    """Wait for `work`; if `deadline` comes first, cancel `tasks` (each cleans up after
    itself) and return True."""
    if await before_deadline(work, deadline, summary):
        return False
    for t in tasks:
        t.cancel()
    return True
