"""Administrative calls (plans, repositories, sites, listings) as short workflows, so the
CLI, the API and services need only a Temporal connection: the catalog stays behind the
workers. A call runs one activity on the queue that owns the I/O: the catalog's (the
workflow queue) or a site's (repository initialisation, restore-point deletion).

Anyone who can reach Temporal can start this workflow, so it runs only the operations of
the closed list in `models.admin`, with the payload validated by the operation's model
before any activity is scheduled; anything else fails the workflow at once, non-retryable,
having changed nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from models.admin import ADMIN_OPS, AdminRefused, admin_request
    from models.inventory import Strict
    from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue

from workflows.common import as_activity_failure, retry

CLOSED_OPERATIONS_PATCH = "admin-closed-operations"


class AdminCall(Strict):
    """`operation` names one of `models.admin.ADMIN_OPS` (run as activity `admin_<operation>`);
    `site` routes it to that site's worker (None: the catalog's)."""

    operation: str
    payload: dict[str, Any] = {}
    site: str | None = None
    timeout_s: int = Field(default=600, ge=1, le=3600)  # the caller's patience (runs recorded before it: 10 min)


@workflow.defn(name="Admin")
class AdminWorkflow:
    @workflow.run
    async def run(self, call: AdminCall) -> Any:
        try:
            payload: dict[str, Any] = admin_request(call.operation, call.payload, call.site).model_dump(mode="json")
        except AdminRefused as e:
            # Runs recorded before the closed list scheduled whatever they were given; replaying
            # them must do the same. Every new run takes the patched branch and is refused.
            if workflow.patched(CLOSED_OPERATIONS_PATCH):
                raise ApplicationError(str(e), type="InvalidRequest", non_retryable=True) from None
            payload = call.payload
        workflow.set_current_details(f"{call.operation} on {queue_of(call)}")
        return await run_admin_activity(call, payload)


def queue_of(call: AdminCall) -> str:
    return site_task_queue(call.site) if call.site else WORKFLOW_TASK_QUEUE


# A catalog call (no site) can be a local activity of the orchestration worker that runs the
# admin service, where the catalog's activities live: one marker instead of a round trip
# through Temporal for each of the many checks a burst of DR requests makes. A site's call
# needs that site's worker; `list_jobs` asks Temporal for runs' ends, which may take long:
# both stay normal activities. A local activity runs at least once (a workflow task the
# server turns away runs it again), so only reads are local (`models.admin.AdminOp.reads`);
# creating and changing calls stay activities, which run again only when they fail.
LOCAL_ADMIN = "admin-catalog-calls-are-local-activities"
# Runs recorded under LOCAL_ADMIN before this patch ran every site-less call but `list_jobs`
# locally, writes too; replaying them must do the same.
ONLY_READS_LOCAL = "admin-only-reads-are-local-activities"
NOT_LOCAL = frozenset({"list_jobs"})


def runs_locally(call: AdminCall) -> bool:
    """Whether this call's activity is a local one (the order of the patch checks is part of
    the recorded histories: keep it)."""
    if call.site is not None or call.operation in NOT_LOCAL or not workflow.patched(LOCAL_ADMIN):
        return False
    op = ADMIN_OPS.get(call.operation)
    return (op is not None and op.reads) or not workflow.patched(ONLY_READS_LOCAL)


async def run_admin_activity(call: AdminCall, payload: dict[str, Any]) -> Any:
    """The one activity of an admin call (`payload`: its validated request), on the queue
    that owns the I/O; given up after `call.timeout_s` when no worker there answers."""
    name, reach, policy = f"admin_{call.operation}", timedelta(seconds=call.timeout_s), retry(3, 1)
    if runs_locally(call):
        return await as_activity_failure(name, workflow.execute_local_activity(
            name, payload, summary=call.operation, start_to_close_timeout=timedelta(minutes=5),
            schedule_to_close_timeout=reach, retry_policy=policy))
    return await workflow.execute_activity(
        name, payload, task_queue=queue_of(call), summary=call.operation,
        start_to_close_timeout=timedelta(minutes=5), schedule_to_close_timeout=reach,
        heartbeat_timeout=timedelta(seconds=30),  # the worker's ticker beats: a killed worker costs 30 s
        retry_policy=policy)
