"""Calling the admin service (workflows/admin_service.py) as a client: an Update, starting the
service workflow when it is not running, and calling again while it moves to its next run
or while Temporal turns away more concurrent calls than it takes at once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models.queues import WORKFLOW_TASK_QUEUE
from workflows.admin import AdminCall
from workflows.admin_service import ADMIN_SERVICE_ID, DRAINING, AdminServiceState, AdminServiceWorkflow

# Temporal holds at most a few Updates in flight per workflow; a busier moment is told to
# come back (RESOURCE_EXHAUSTED). A call admitted while the service continues as new is
# aborted, never run (UNAVAILABLE with these words). Any other UNAVAILABLE is Temporal
# itself not answering: that is the caller's answer at once, not a reason to wait.
ABORTED_UPDATE = ("update was aborted", "workflow is closing")
# Beyond the activity's own time limit: the orchestration worker may itself be down.
GRACE = timedelta(seconds=30)


class AdminServiceUnanswered(Exception):
    """No orchestration worker took the call in time (the service never ran it)."""


def _start_operation() -> WithStartWorkflowOperation[Any, Any]:
    return WithStartWorkflowOperation(
        AdminServiceWorkflow.run, AdminServiceState(), id=ADMIN_SERVICE_ID, task_queue=WORKFLOW_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="abdr admin service: listings and inventory/plan changes of the CLI, API and services",
        static_details="One Update per call; the history is bounded by continue-as-new.")


def _retryable(e: BaseException) -> bool:
    if isinstance(e, RPCError):
        return e.status == RPCStatusCode.RESOURCE_EXHAUSTED or (
            e.status == RPCStatusCode.UNAVAILABLE and any(w in str(e) for w in ABORTED_UPDATE))
    if isinstance(e, WorkflowUpdateFailedError):
        return isinstance(e.cause, ApplicationError) and e.cause.type == DRAINING
    return False


async def call_admin_service(client: Client, call: AdminCall, result_type: type) -> Any:
    """The call's answer as `result_type`; its failure as raised by the SDK
    (WorkflowUpdateFailedError, with the activity's failure as its cause), or
    AdminServiceUnanswered when nothing answered within the call's time and the grace."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + call.timeout_s + GRACE.total_seconds()
    pause = 0.05
    update_id = str(uuid.uuid4())  # one id for every try: a run that took the call once takes it once
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AdminServiceUnanswered(call.operation)
        try:
            # The answer's type depends on the operation, which the SDK's typed overloads of an
            # update reference cannot express: result_type says it at run time.
            return await asyncio.wait_for(client.execute_update_with_start_workflow(  # type: ignore[call-overload]
                AdminServiceWorkflow.call, call, start_workflow_operation=_start_operation(), id=update_id,
                result_type=result_type), timeout=left)
        except (asyncio.TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            raise AdminServiceUnanswered(call.operation) from None
        except (RPCError, WorkflowUpdateFailedError) as e:
            if not _retryable(e):
                raise
        await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        pause = min(pause * 2, 2.0)
