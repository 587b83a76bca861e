"""A restore survives the death of either worker: the site worker (it writes the disks) and
the orchestration worker (it runs the workflow) run as separate processes; one of them is
SIGKILLed at the first durable progress the test observes, a new one is started, and the
restore finishes from the recorded progress with the bytes the source had at the point."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from models.jobs import RestoreDisksResult, TransferProgress
from models.plans import RunResult
from models.queues import site_task_queue
from models.requests import RestoreMode, RestoreRequest
from models.services import BackupService
from starter.client import AbdrClient
from tests.e2e.killable import KillableStack, MiB, killable_stack

SIZE = 48 * MiB
WRITE_IOPS = 32  # 2 MiB/s: ~24 s of writing; the server sees progress every ~8 s


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[KillableStack]:
    with killable_stack(tmp_path) as stack:
        yield stack


async def backed_up_point(s: KillableStack, client: AbdrClient) -> tuple[str, bytes]:
    """A backup point of VM "vm1" and the bytes the VM had when it was taken (the oracle)."""
    data = s.make_vm("vm1", SIZE)
    await s.backup_plan(client, ["vm1"])
    result = await client.plan_run_result(await client.run_backup_plan("p"))
    assert result.result == RunResult.SUCCESS, result
    s.catalog.put_service(BackupService(name="default", site="default", restore_write_iops=WRITE_IOPS))
    return result.vms[0].point_id or "", data


async def durable_progress(s: KillableStack, client: AbdrClient, handle: WorkflowHandle) -> TransferProgress:
    """The first restore_disks heartbeat that confirms written bytes."""
    desc = None
    for _ in range(1200):
        desc = await handle.describe()
        for p in desc.raw_description.pending_activities:
            if p.activity_type.name == "restore_disks" and p.heartbeat_details.payloads:
                [details] = await client.client.data_converter.decode(p.heartbeat_details.payloads)
                progress = TransferProgress.model_validate(details)
                if progress.bytes_done > 0:
                    return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"the restore reported no durable progress: {desc and desc.raw_description}\n{s.logs()}")


async def restore_disks_runs(handle: WorkflowHandle) -> tuple[list[int], RestoreDisksResult, list[str]]:
    """From the history: the attempts restore_disks was started with, its result, and the
    site activities scheduled without a heartbeat timeout."""
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    result: RestoreDisksResult | None = None
    no_heartbeat: list[str] = []
    async for e in handle.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            a = e.activity_task_scheduled_event_attributes
            scheduled[e.event_id] = a.activity_type.name
            if a.task_queue.name == site_task_queue("default") and not a.heartbeat_timeout.ToTimedelta():
                no_heartbeat.append(a.activity_type.name)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            a = e.activity_task_started_event_attributes
            if scheduled[a.scheduled_event_id] == "restore_disks":
                attempts.append(a.attempt)
        elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            a = e.activity_task_completed_event_attributes
            if scheduled[a.scheduled_event_id] == "restore_disks":
                [raw] = await pydantic_data_converter.decode(a.result.payloads)
                result = RestoreDisksResult.model_validate(raw)
    assert result is not None, "restore_disks never completed"
    return attempts, result, no_heartbeat


async def test_site_worker_killed_mid_restore_resumes_from_durable_progress(sites: KillableStack) -> None:
    site, _ = sites.worker("site"), sites.worker("orchestration")
    client = await sites.client()
    point, data = await backed_up_point(sites, client)
    handle = await client.restore(RestoreRequest(point_id=point, mode=RestoreMode.REBUILD, new_name="vm1-r"))
    seen = await durable_progress(sites, client, handle)
    site.kill()  # SIGKILL mid-write: the server notices through the missing heartbeats
    sites.worker("site")
    restored = await client.restore_result(handle)
    assert restored.vm.vm == "vm1-r"
    attempts, result, no_heartbeat = await restore_disks_runs(handle)
    assert attempts == [2], attempts  # the history records the last start: the retry
    # The retry resumed from what the dead worker confirmed, and wrote only the rest.
    assert 0 < seen.bytes_done <= result.resumed_bytes < SIZE
    assert result.written_bytes <= SIZE - result.resumed_bytes
    assert sites.disk("vm1-r") == data
    # A worker dying in any step is noticed within a heartbeat timeout, not a 10 min start-to-close.
    assert no_heartbeat == [], no_heartbeat


async def test_orchestration_worker_killed_mid_restore_lets_the_write_finish(sites: KillableStack) -> None:
    _, orchestration = sites.worker("site"), sites.worker("orchestration")
    client = await sites.client()
    point, data = await backed_up_point(sites, client)
    handle = await client.restore(RestoreRequest(point_id=point, mode=RestoreMode.REBUILD, new_name="vm1-r"))
    seen = await durable_progress(sites, client, handle)
    orchestration.kill()  # the workflow's worker dies; the site worker keeps writing and beating
    await asyncio.sleep(3)
    sites.worker("orchestration")
    restored = await client.restore_result(handle)
    assert restored.vm.vm == "vm1-r"
    attempts, result, _ = await restore_disks_runs(handle)
    # Never started over: the one attempt ran on to the end, past the progress seen at the kill.
    assert attempts == [1] and result.resumed_bytes == 0 and 0 < seen.bytes_done < SIZE
    assert sites.disk("vm1-r") == data
