"""The admin service (workflows/admin_service.py): admin calls are Updates of one long-lived
workflow, so listings leave no workflow per call in the Web UI's list; a refused call runs
nothing and leaves no trace; the service continues as new under load without losing or
doubling a call."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from models.admin import ADMIN_OPS
from models.queues import WORKFLOW_TASK_QUEUE
from starter.client import AbdrError
from starter.client.admin_service import call_admin_service
from tests.e2e.conftest import Stack
from tests.e2e.histories import activities_run
from workflows.admin import AdminCall
from workflows.admin_service import ADMIN_SERVICE_ID, AdminServiceState, AdminServiceWorkflow


async def workflow_ids(client: Client) -> list[str]:
    """The admin workflows in the list (other tests' runs may end meanwhile: not counted)."""
    return [wf.id async for wf in client.list_workflows("WorkflowType = 'Admin' OR WorkflowType = 'AdminService'")]


async def event_types(client: Client, run_id: str | None = None) -> list[EventType.ValueType]:
    handle = client.get_workflow_handle(ADMIN_SERVICE_ID, run_id=run_id)
    return [e.event_type async for e in handle.fetch_history_events()]


async def test_listings_leave_no_workflow_per_call(stack: Stack) -> None:
    client = stack.client.client
    await stack.client.list_sites()  # the service runs from the first call on
    before = await workflow_ids(client)
    for _ in range(5):
        await stack.client.list_sites()
        await stack.client.list_clusters()
        await stack.client.list_backup_plans()
    assert await workflow_ids(client) == before  # fifteen calls, not one more entry in the list
    running = [wf async for wf in client.list_workflows("ExecutionStatus = 'Running' AND WorkflowType = 'AdminService'")]
    assert len(running) == 1 and running[0].id == ADMIN_SERVICE_ID
    updates = (await event_types(client)).count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    assert updates >= 16
    # Reads of the catalog are local activities of the worker that runs the service.
    ran = [a async for wf in client.list_workflows(f"WorkflowId = '{ADMIN_SERVICE_ID}'")
           for a in await activities_run(client, ADMIN_SERVICE_ID, wf.run_id)]
    assert sum(local for name, local in ran if name in {"admin_list_sites", "admin_list_clusters",
                                                         "admin_list_backup_plans"}) >= 15, ran
    # Every call of the service (this module's earlier tests' too) ran where its kind says.
    wrong = [(name, local) for name, local in ran if local != ADMIN_OPS[name.removeprefix("admin_")].reads]
    assert not wrong, wrong


async def refused(client: Client, call: AdminCall) -> ApplicationError:
    """Send `call` as any Temporal client could: the validator must reject it."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await call_admin_service(client, call, dict)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest" and cause.non_retryable
    return cause


async def test_a_refused_call_runs_nothing_and_leaves_no_trace(stack: Stack) -> None:
    client = stack.client.client
    await stack.client.list_sites()
    before = await event_types(client)
    with pytest.raises(AbdrError, match="invalid payload"):
        await stack.client.admin("add_site", {"name": "../../etc", "admin": True})
    err = await refused(client, AdminCall(operation="resolve_plan", payload={"name": "x"}))
    assert "unknown admin operation 'resolve_plan'" in err.message  # an activity, but no admin operation
    err = await refused(client, AdminCall(operation="delete_restore_points", payload={"ids": ["p"]}))
    assert "runs on a site's worker" in err.message
    assert await event_types(client) == before  # rejected by the validator: nothing in the history
    assert "../../etc" not in {s.name for s in await stack.client.list_sites()}


async def test_the_service_continues_as_new_and_answers_every_call(stack: Stack) -> None:
    """A small run size so a burst of concurrent calls (more than Temporal takes in flight at
    once) crosses several runs: every call is answered, exactly once, with its own answer."""
    client = stack.client.client
    old = client.get_workflow_handle(ADMIN_SERVICE_ID)
    try:
        await old.terminate("a test starts the service with a small run size")
    except Exception:
        pass  # not running
    first = await client.start_workflow(AdminServiceWorkflow.run, AdminServiceState(max_calls=4),
                                        id=ADMIN_SERVICE_ID, task_queue=WORKFLOW_TASK_QUEUE)
    names = [f"burst{i:02d}" for i in range(24)]
    made = await asyncio.gather(*(stack.client.add_site(n) for n in names))
    assert [s.name for s in made] == names
    assert set(names) <= {s.name for s in await stack.client.list_sites()}
    again = await asyncio.gather(*(stack.client.add_site(n) for n in names[:3]), return_exceptions=True)
    assert all(isinstance(e, AbdrError) and "exists" in str(e) for e in again), again  # none was doubled
    first_run = client.get_workflow_handle(ADMIN_SERVICE_ID, run_id=first.first_execution_run_id)
    assert (await first_run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    # A creating call is a normal activity: a local one would run again when a workflow task
    # is turned away, and its second run would answer "already exists" to the caller.
    ran = await activities_run(client, ADMIN_SERVICE_ID, first.first_execution_run_id)
    assert ran and all(name == "admin_add_site" and not local for name, local in ran), ran
    if target := os.environ.get("ABDR_RECORD_HISTORIES"):  # the service never completes: record a run that moved on
        Path(target, "AdminService.json").write_text((await first_run.fetch_history()).to_json())
    began = (await first_run.describe()).start_time
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{ADMIN_SERVICE_ID}'")
            if wf.start_time >= began]  # this test's chain of runs, not earlier tests' services
    assert len(runs) >= 2, [r.status for r in runs]  # runs of 4 calls (up to 14: see below)
    completed = 0
    for run in runs:
        types = await event_types(client, run.run_id)
        completed += types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
        # A run stays small: it admits calls until it has taken 4, and one workflow task admits
        # at most the 10 Temporal holds in flight at once.
        assert types.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) <= 4 + 10, len(types)
    assert completed >= 24 + 1 + 3  # the burst, the listing, the three sites refused as existing
