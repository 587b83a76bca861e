"""Crashes in the middle, at moments the tests observe (a heartbeat the server recorded): a
worker SIGKILLed mid-transfer, the Temporal server SIGKILLed (with and without its worker)
and started again on its SQLite state. The work finishes, resumes from the recorded
progress instead of starting over, and every result is byte-exact against the data the
test wrote."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.jobs import PlanRunResult, RestoreResult, TransferProgress
from models.plans import RunResult
from models.requests import RestoreMode, RestoreRequest
from models.services import BackupService
from starter.client import AbdrClient
from tests.e2e.killable import KillableStack, MiB, killable_stack
from tests.e2e.observe import wait_heartbeat
from tests.e2e.oracle import assert_same_bytes
from tests.ports import free_port


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KillableStack]:
    with killable_stack(tmp_path) as stack:
        yield stack


async def setup_plan(world: KillableStack, client: AbdrClient, vms: list[str], read_iops: int) -> None:
    world.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=read_iops))
    await world.backup_plan(client, vms)


async def wait_progress(client: AbdrClient, workflow_id: str, at_least: int) -> TransferProgress:
    """The backup transfer's progress as the server recorded it (what a retry resumes from)."""
    return await wait_heartbeat(client.client, workflow_id, "transfer_backup", TransferProgress, "bytes_done",
                                at_least)


async def activity_results(client: AbdrClient, workflow_id: str, activity: str) -> list[tuple[int, dict]]:
    """(attempt, result) of each completed `activity` in the workflow's recorded history."""
    started: dict[int, int] = {}
    scheduled: dict[int, str] = {}
    out = []
    async for e in client.client.get_workflow_handle(workflow_id).fetch_history_events():
        if e.HasField("activity_task_scheduled_event_attributes"):
            scheduled[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
        elif e.HasField("activity_task_started_event_attributes"):
            started[e.activity_task_started_event_attributes.scheduled_event_id] = \
                e.activity_task_started_event_attributes.attempt
        elif e.HasField("activity_task_completed_event_attributes"):
            done = e.activity_task_completed_event_attributes
            if scheduled.get(done.scheduled_event_id) == activity:
                [result] = await client.client.data_converter.decode(done.result.payloads)
                out.append((started[done.scheduled_event_id], result))
    return out


async def test_worker_killed_mid_transfer_resumes_and_restores_exactly(world: KillableStack) -> None:
    first = world.worker()
    client = await world.client()
    size = 48 * MiB
    data = world.make_vm("vm1", size)
    await setup_plan(world, client, ["vm1"], read_iops=48)  # 3 MiB/s: ~16 s of transfer
    run = await client.run_backup_plan("p")
    seen = await wait_progress(client, "backup/p/c1/vm1", at_least=4 * MiB)
    first.kill()  # SIGKILL: no graceful anything
    world.worker()
    result = await client.plan_run_result(run)
    assert result.result == RunResult.SUCCESS, result
    [disk] = result.vms[0].disks
    # The new worker resumed from the durable progress the dead one had confirmed.
    assert disk.resumed_chunks >= seen.chunk_index > 0
    h = await client.restore(RestoreRequest(point_id=result.vms[0].point_id, mode=RestoreMode.REBUILD,
                                            new_name="vm1-restored"))
    await client.restore_result(h)
    assert_same_bytes(world.disk("vm1-restored"), data, "restore of the resumed backup")


async def test_temporal_killed_mid_backup_and_mid_restore_resumes_from_recorded_progress(world: KillableStack) -> None:
    metrics_port = free_port()
    world.env["ABDR_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
    worker = world.worker()
    client = await world.client()
    # The oracles, written by the test. At 3 MiB/s, a's transfer lasts ~16 s: long enough for
    # the server to record a heartbeat after the first one (the SDK sends one per 8 s at most).
    data = {name: world.make_vm(name, size * MiB) for name, size in (("a", 48), ("b", 8))}
    await setup_plan(world, client, ["a", "b"], read_iops=48)
    run = await client.run_backup_plan("p")
    seen = await wait_progress(client, "backup/p/c1/a", at_least=4 * MiB)  # a heartbeat the server recorded
    # A power cut: the server (SIGKILL) and the worker die mid-transfer, so nothing but the
    # server's SQLite state can tell the new worker where the transfer was.
    world.server.kill()
    worker.kill()
    world.server.start()
    worker = world.worker()
    client = await world.client()
    same_run = client.client.get_workflow_handle(run.id, run_id=run.result_run_id, result_type=PlanRunResult)
    result = await client.plan_run_result(same_run)  # the run that was cut, not a new one
    assert result.result == RunResult.SUCCESS, result
    by_vm = {v.vm.vm: v for v in result.vms}
    [disk] = by_vm["a"].disks
    assert disk.resumed_chunks >= seen.chunk_index > 0, (disk, seen)  # resumed from the recorded heartbeat

    world.catalog.put_service(BackupService(name="default", site="default", restore_write_iops=48))
    h = await client.restore(RestoreRequest(point_id=by_vm["a"].point_id, mode=RestoreMode.REBUILD, new_name="a2"))
    written = await wait_heartbeat(client.client, h.id, "restore_disks", TransferProgress, "bytes_done", 4 * MiB)
    world.server.kill()  # the server alone dies mid-restore; the worker keeps its attempt going
    world.server.start()
    client = await world.client()
    restored = await client.restore_result(client.client.get_workflow_handle(h.id, run_id=h.result_run_id,
                                                                                result_type=RestoreResult))
    assert restored.vm.vm == "a2"
    [(attempt, disks)] = await activity_results(client, h.id, "restore_disks")
    # Either the worker's attempt carried on through the outage, or a retry resumed from the
    # recorded progress: never a restart from zero.
    assert attempt == 1 or disks["resumed_bytes"] >= written.bytes_done, (attempt, disks, written)
    for name, vm in (("a2", "a"), ("a", "a"), ("b", "b")):
        assert_same_bytes(world.disk(name), data[vm], f"{name} after the server was killed twice")
    for name in ("a", "b"):  # every point of the cut run restores exactly
        h = await client.restore(RestoreRequest(point_id=by_vm[name].point_id, mode=RestoreMode.REBUILD,
                                                new_name=f"{name}-check"))
        await client.restore_result(h)
        assert_same_bytes(world.disk(f"{name}-check"), data[name], f"point of {name}")
    # The worker exports Temporal's metrics and abdr's own for Prometheus.
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    read = [line for line in metrics.splitlines() if line.startswith("abdr_backup_read_bytes")]
    assert read and float(read[0].rsplit(" ", 1)[1]) > 0
    assert "temporal_activity_execution_latency" in metrics
