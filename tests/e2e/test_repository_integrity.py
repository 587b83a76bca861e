"""Repository maintenance through the real stack (dev server, workers, local cluster):
verify sets a damaged chunk aside and the next backup stores it anew; a verify that finds
thousands of damaged ranges returns a small result and the rest pages from the repository;
verify and GC heartbeat by elapsed time when they run slowly (an IOPS cap)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus

from models.jobs import FINDINGS_SAMPLE, MaintenanceResult
from models.plans import RunResult
from models.requests import RestoreMode, RestoreRequest
from models.restore_points import PointType
from tests.e2e.conftest import MiB, Stack
from tests.e2e.test_backup_restore import plan_spec, run_plan


def chunk_files(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "chunks").glob("*/*") if len(p.name) == 64)


def flip(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


async def verify(stack: Stack, **kw: object) -> MaintenanceResult:
    return await stack.client.result(await stack.client.maintain_repository("r1", **kw))


async def restored(stack: Stack, point_id: str, name: str) -> bytes:
    h = await stack.client.restore(RestoreRequest(point_id=point_id, mode=RestoreMode.REBUILD, new_name=name))
    await stack.client.restore_result(h)
    return stack.disk_bytes(name)


async def test_a_damaged_chunk_is_set_aside_and_the_next_backups_store_it_anew(stack: Stack) -> None:
    stack.make_vm("web", size=8 * MiB)
    source = stack.disk_bytes("web")  # the oracle: what the VM's disk holds (nothing writes it)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    first = (await run_plan(stack, "gold")).vms[0].point_id
    victim = chunk_files(stack.repo_path)[0]
    flip(victim)

    found = await verify(stack)
    assert found.damaged_points == [first] and {d["point_id"] for d in found.damaged} == {first}
    assert (await stack.client.get_restore_point(first)).state == "DAMAGED"
    assert not victim.exists() and victim.with_name(victim.name + ".bad").exists()

    # A new full backup must store the chunk again, not find the damaged copy "already stored".
    again = await run_plan(stack, "gold", full=True)
    assert again.result == RunResult.SUCCESS and again.vms[0].type == PointType.FULL
    clean = await verify(stack)
    assert clean.damaged == [] and clean.findings == 0 and clean.healed_points == 1  # the first is whole again
    assert (await stack.client.get_restore_point(first)).state == "READY"
    assert await restored(stack, again.vms[0].point_id, "web-full") == source
    assert await restored(stack, first, "web-first") == source

    # A plan's next run never builds on a DAMAGED base (an incremental would carry the bad
    # entry; the repository's own guard for that is tests/drivers/repository/test_verify_damage.py).
    flip(chunk_files(stack.repo_path)[1])
    assert (await verify(stack)).findings > 0
    nxt = await run_plan(stack, "gold")
    assert nxt.vms[0].type == PointType.FULL
    assert (await verify(stack)).findings == 0
    assert await restored(stack, nxt.vms[0].point_id, "web-next") == source


async def test_thousands_of_findings_return_a_small_result_and_page(stack: Stack) -> None:
    stack.make_vm("big", size=256 * MiB)
    await stack.client.create_backup_plan(plan_spec("big", ["big"]))
    points = [(await run_plan(stack, "big", full=i == 0)).vms[0].point_id for i in range(6)]
    for p in chunk_files(stack.repo_path)[::2]:  # every other chunk gone: ranges cannot merge
        p.unlink()
    result = await verify(stack)
    assert result.findings >= 2000, result.counts
    assert len(result.damaged) == FINDINGS_SAMPLE and sorted(result.damaged_points) == sorted(points)
    assert len(result.model_dump_json()) < 16 * 1024  # a few KiB, whatever the damage

    seen: list[dict] = []
    while page := (await stack.client.repository_findings("r1", offset=len(seen), limit=1000)).findings:
        seen += page
    assert len(seen) == result.findings
    assert seen[:FINDINGS_SAMPLE] == result.damaged
    assert {f["point_id"] for f in seen} == set(points)
    assert {f["kind"] for f in seen} == {"damaged_range"}


async def _heartbeats(stack: Stack, handle: object) -> list[dict]:
    """The maintenance activity's heartbeat details, as the server holds them, until the end."""
    seen: list[dict] = []
    while True:
        desc = await handle.describe()  # type: ignore[attr-defined]
        for pending in desc.raw_description.pending_activities:
            if pending.heartbeat_details.payloads:
                [details] = await stack.client.client.data_converter.decode(pending.heartbeat_details.payloads)
                if not seen or seen[-1] != details:
                    seen.append(details)
        if desc.status != WorkflowExecutionStatus.RUNNING:
            return seen
        await asyncio.sleep(0.3)


async def test_verify_and_gc_heartbeat_by_elapsed_time_under_an_iops_cap(stack: Stack) -> None:
    stack.make_vm("slow", size=16 * MiB)
    await stack.client.create_backup_plan(plan_spec("slow", ["slow"]))
    await run_plan(stack, "slow")
    stored = len(chunk_files(stack.repo_path))
    iops = 16  # each 128 KiB chunk is two 64 KiB I/Os: verify takes >= 2 * stored / 16 s
    t0 = time.monotonic()
    handle = await stack.client.maintain_repository("r1", verify=True, gc=True, read_iops=iops)
    beats = await _heartbeats(stack, handle)
    result = MaintenanceResult.model_validate(await stack.client.result(handle))
    elapsed = time.monotonic() - t0
    assert result.findings == 0 and result.counts["chunks_checked"] == stored
    assert elapsed >= (2 * stored - 2) / iops  # the cap held it back
    chunk_beats = [b for b in beats if b["op"] == "verify" and b["phase"] == "chunks"]
    # The server holds details that say how far the reading is, while it is under way. (It
    # sees at most one per 80 % of the heartbeat timeout: the SDK throttles; how often the
    # activity reports is tests/test_maintenance_activity.py's subject.)
    assert chunk_beats and all(0 < b["done"] < stored and b["total"] == stored for b in chunk_beats), beats
