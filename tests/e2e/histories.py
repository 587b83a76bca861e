"""Recording workflow histories for the replay tests (tests/replay): with
ABDR_RECORD_HISTORIES=DIR set, e2e tests save the history of every completed workflow
they ran, one JSON file per workflow type (the newest wins)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus


async def export_histories(client: Client) -> None:
    target = os.environ.get("ABDR_RECORD_HISTORIES")
    if not target:
        return
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    async for wf in client.list_workflows("ExecutionStatus = 'Completed'"):
        if wf.status != WorkflowExecutionStatus.COMPLETED:
            continue
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        (out / f"{wf.workflow_type}.json").write_text(history.to_json())


async def export_chain(client: Client, workflow_id: str, version: str) -> None:
    """With ABDR_RECORD_HISTORIES set, save every run of one workflow id (a continue-as-new
    chain, whose runs but the last export_histories skips, or one VM's successive backups)
    as `<type>.<version>-<n>.json`, n counting from the oldest run."""
    target = os.environ.get("ABDR_RECORD_HISTORIES")
    if not target:
        return
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
    for n, wf in enumerate(sorted(runs, key=lambda w: w.start_time), start=1):
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        (Path(target) / f"{wf.workflow_type}.{version}-{n}.json").write_text(history.to_json())


async def quiesce(client: Client) -> None:
    """Leave a shared server clean for the next test: histories recorded (when asked), no
    schedules, no running workflows."""
    await export_histories(client)
    async for s in await client.list_schedules():
        await client.get_schedule_handle(s.id).delete()
    async for wf in client.list_workflows("ExecutionStatus = 'Running'"):
        if wf.status == WorkflowExecutionStatus.RUNNING:
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test finished")


async def who_ran(client: Client, workflow_id: str) -> list[tuple[str, str]]:
    """(activity type, identity of the worker that started it) for each activity of the
    workflow's latest run, oldest first: says which stack's worker served it."""
    scheduled: dict[int, str] = {}
    out: list[tuple[str, str]] = []
    async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("activity_task_started_event_attributes"):
            a = event.activity_task_started_event_attributes
            out.append((scheduled.get(a.scheduled_event_id, "?"), a.identity))
    return out


LOCAL_ACTIVITY_MARKER = "core_local_activity"


async def activities_run(client: Client, workflow_id: str, run_id: str | None = None) -> list[tuple[str, bool]]:
    """(activity type, whether it ran as a local activity) for each activity of a run, oldest
    first: a normal one from its scheduled event, a local one from its marker."""
    out: list[tuple[str, bool]] = []
    async for event in client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            out.append((event.activity_task_scheduled_event_attributes.activity_type.name, False))
        elif event.HasField("marker_recorded_event_attributes") and \
                event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER:
            [data] = event.marker_recorded_event_attributes.details["data"].payloads
            out.append((json.loads(data.data)["activity_type"], True))
    return out
