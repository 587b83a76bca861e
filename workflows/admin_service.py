"""The admin service: one long-lived workflow that answers every admin call (listings, plan
and inventory changes) as an Update, so the CLI, the API and services still need only a
Temporal connection, and the Web UI's list is not buried under a workflow per call: it
shows this one entry and the operations people care about.

Each call is validated before it is admitted (a refused call leaves nothing in the
history and runs nothing) and then runs the one activity of `workflows.admin`. The history
stays bounded however long the service lives: after `MAX_CALLS_PER_RUN` calls, or when
Temporal suggests it, it stops admitting calls (callers are told to call again and the
client does), lets the admitted ones finish and continues as new."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from pydantic import Field

    from models.admin import AdminRefused, admin_request
    from models.inventory import Strict

from workflows.admin import AdminCall, run_admin_activity

ADMIN_SERVICE_ID = "abdr-admin"
# Temporal allows 2,000 Updates per run; each call adds about ten events, so 500 calls keep a
# run near 5,000 events (Temporal suggests continuing as new at 4,096 anyway; either comes first).
MAX_CALLS_PER_RUN = 500
DRAINING = "AdminServiceDraining"
QUIET_BEFORE_NEXT_RUN = timedelta(seconds=3)  # the rejection the client retries: the next run takes the call


class AdminServiceState(Strict):
    """What one run hands the next: a counter and the run's size, so its input stays tiny."""

    calls_before: int = 0
    max_calls: int = Field(default=MAX_CALLS_PER_RUN, ge=1, le=1500)


@workflow.defn(name="AdminService")
class AdminServiceWorkflow:
    def __init__(self) -> None:
        self._calls = 0
        self._draining = False

    @workflow.run
    async def run(self, state: AdminServiceState) -> None:
        workflow.set_current_details(f"serving admin calls ({state.calls_before} answered by earlier runs)")
        await workflow.wait_condition(
            lambda: self._calls >= state.max_calls or workflow.info().is_continue_as_new_suggested())
        self._draining = True  # admit no more: the ones admitted finish in this run
        await workflow.wait_condition(workflow.all_handlers_finished)
        # Continue as new well after the last call's completion, not with it: a completion the
        # server has not yet handed to its caller when the run closes can make the server retry
        # that call on the next run (temporalio/temporal#6375), which would double a change.
        # Calls meanwhile are turned away as draining, and the client sends them again.
        await workflow.sleep(QUIET_BEFORE_NEXT_RUN, summary="let the last answers reach their callers")
        workflow.continue_as_new(AdminServiceState(calls_before=state.calls_before + self._calls,
                                                     max_calls=state.max_calls))

    @workflow.update
    async def call(self, call: AdminCall) -> Any:
        self._calls += 1
        payload = admin_request(call.operation, call.payload, call.site).model_dump(mode="json")
        return await run_admin_activity(call, payload)

    @call.validator
    def _admit(self, call: AdminCall) -> None:
        if self._draining:
            raise ApplicationError("the admin service is moving to its next run: call again", type=DRAINING)
        try:
            admin_request(call.operation, call.payload, call.site)
        except AdminRefused as e:
            raise ApplicationError(str(e), type="InvalidRequest", non_retryable=True) from None

    @workflow.query
    def calls_this_run(self) -> int:
        return self._calls


