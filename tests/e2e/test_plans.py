"""Plans as schedules: a schedule that fires on its own, retention, the window's end,
overlapping runs, and bad input refused with nothing changed."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from temporalio.client import ScheduleOverlapPolicy

from drivers.local.tools import rewrite_fraction
from models.admin import BackupPlanView
from models.jobs import PlanRunResult
from models.plans import RunResult, VMRef
from models.requests import RestoreMode, RestoreRequest
from models.services import BackupService, RepositorySpec
from starter.client import AbdrError
from starter.runtime import schedules
from starter.stack import status
from tests.e2e.conftest import MiB, Stack
from tests.e2e.oracle import Image, assert_image, assert_point_restores_to, capture
from tests.e2e.test_backup_restore import plan_spec, run_plan

UTC = timezone.utc


async def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def trigger_and_wait(stack: Any, plan: str, kind: str = "backup", result_type: type = PlanRunResult) -> Any:
    """Fire the plan's schedule now (a real scheduled action: AUTO points) and wait for it."""
    handle = stack.client.client.get_schedule_handle(schedules.schedule_id(plan, kind))
    before = (await handle.describe()).info.num_actions
    await handle.trigger(overlap=ScheduleOverlapPolicy.ALLOW_ALL)
    desc = await wait_for(lambda: _described_after(handle, before), 30, "the triggered action")
    action = desc.info.recent_actions[-1].action
    return await stack.client.client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id,
                                                         result_type=result_type).result()


async def _described_after(handle: Any, before: int) -> Any:
    d = await handle.describe()
    return d if d.info.num_actions > before else None


def repo_point_ids(stack: Stack) -> set[str]:
    return {p.name.removesuffix(".json") for p in (stack.repo_path / "points").glob("*.json")}


def change_and_capture(stack: Stack, vms: list[str], seed: int) -> dict[str, Image]:
    """Write to each VM (so every point has its own bytes) and capture the oracle of the next point."""
    for vm in vms:
        rewrite_fraction(stack.driver, stack.driver.find_vm(vm).id, "disk0", 0.1, seed=seed)
    return {vm: capture(stack.driver, vm) for vm in vms}


async def assert_points_restore(stack: Stack, oracles: dict[str, Image]) -> None:
    """Each point id restores exactly to its oracle (a REBUILD as a new VM, deleted after)."""
    for point_id, oracle in oracles.items():
        await assert_point_restores_to(stack.client, stack.driver, point_id, oracle, "restore-check")


def point_oracles(result: PlanRunResult, images: dict[str, Image]) -> dict[str, Image]:
    return {v.point_id: images[v.vm.vm] for v in result.vms}


async def test_schedule_fires_on_its_own(stack: Stack) -> None:
    for name in ("a", "b", "c"):
        stack.make_vm(name, size=2 * MiB)
    images = {name: capture(stack.driver, name) for name in ("a", "b", "c")}
    due = (datetime.now(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (due - datetime.now(UTC)).total_seconds() < 5:
        due += timedelta(minutes=1)
    await stack.client.create_backup_plan(plan_spec("auto", ["a", "b", "c"],
                                                    schedule={"kind": "DAILY", "times": [due.strftime("%H:%M")]}))
    desc = await stack.client.client.get_schedule_handle(schedules.schedule_id("auto")).describe()
    assert desc.info.next_action_times[0] == due

    async def ended() -> list[BackupPlanView]:
        # The run records its result after its VMs' points: wait for both.
        plan = await stack.client.get_backup_plan("auto")
        if plan.last_result in ("NEVER_EXECUTE", "RUNNING"):
            return []
        return [plan]

    [plan] = await wait_for(ended, 150, "the scheduled run to end")
    assert plan.last_result == "SUCCESS", plan
    found = await stack.client.list_restore_points(plan="auto")
    assert {p.vm for p in found} == {"a", "b", "c"} and len(found) == 3
    assert {(p.type, p.creation) for p in found} == {("FULL", "AUTO")}
    assert repo_point_ids(stack) == {p.id for p in found}
    await assert_points_restore(stack, {p.id: images[p.vm] for p in found})


async def test_count_retention_keeps_last_n_automatic_and_all_manual(stack: Stack) -> None:
    stack.make_vm("a", size=2 * MiB)
    stack.make_vm("b", size=2 * MiB)
    await stack.client.create_backup_plan(plan_spec("keep2", ["a", "b"], retention={"kind": "COUNT", "value": 2}))
    before = {vm: capture(stack.driver, vm) for vm in ("a", "b")}
    manual = await run_plan(stack, "keep2")
    oracles = point_oracles(manual, before)
    autos = []
    for seed in range(3):
        images = change_and_capture(stack, ["a", "b"], seed)
        autos.append(await trigger_and_wait(stack, "keep2"))
        oracles |= point_oracles(autos[-1], images)
    assert all(r.result == RunResult.SUCCESS for r in autos)
    points = await stack.client.list_restore_points(plan="keep2")
    by_vm = {vm: [p for p in points if p.vm == vm] for vm in ("a", "b")}
    for vm, pts in by_vm.items():
        assert [p.creation for p in pts] == ["MANUAL", "AUTO", "AUTO"], vm
        newest_two = {r.vms[[v.vm.vm for v in r.vms].index(vm)].point_id for r in autos[1:]}
        assert {p.id for p in pts if p.creation == "AUTO"} == newest_two
    assert {v.point_id for v in manual.vms} <= {p.id for p in points}
    assert repo_point_ids(stack) == {p.id for p in points}  # manifests follow the catalog
    await assert_points_restore(stack, {p.id: oracles[p.id] for p in points})  # the kept ones, exactly


async def test_time_retention_expires_old_automatic_points(stack: Stack) -> None:
    stack.make_vm("a", size=2 * MiB)
    await stack.client.create_backup_plan(plan_spec("week", ["a"], retention={"kind": "TIME", "value": 7}))
    old = await trigger_and_wait(stack, "week")
    images = change_and_capture(stack, ["a"], 1)
    manual = await run_plan(stack, "week")
    oracles = point_oracles(manual, images)
    # Age the first two points to 10 days (the clock of a plan that has run for weeks).
    with stack.catalog.session() as s:
        from models.catalog import RestorePointRow

        for pid in (old.vms[0].point_id, manual.vms[0].point_id):
            row = s.get(RestorePointRow, pid)
            row.created_at = datetime.now(UTC) - timedelta(days=10)
            s.add(row)
    images = change_and_capture(stack, ["a"], 2)
    new = await trigger_and_wait(stack, "week")
    oracles |= point_oracles(new, images)
    ids = {p.id for p in await stack.client.list_restore_points(plan="week")}
    assert ids == {manual.vms[0].point_id, new.vms[0].point_id}  # old AUTO gone, old MANUAL kept
    assert repo_point_ids(stack) == ids
    await assert_points_restore(stack, oracles)


async def test_window_end_stops_the_backup_and_cleans_up(stack: Stack) -> None:
    vm_id = stack.make_vm("big", size=16 * MiB)
    source = capture(stack.driver, "big")
    stack.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=2))
    now = datetime.now(UTC)
    end = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (end - now).total_seconds() < 20:
        end += timedelta(minutes=1)
    start = end - timedelta(minutes=15)
    await stack.client.create_backup_plan(plan_spec(
        "nightly", ["big"], window={"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")},
        schedule={"kind": "MINUTELY", "interval": 5}, delay_option="STOP_BACKUP"))
    result = await trigger_and_wait(stack, "nightly")
    assert result.result == RunResult.FAILED
    [vm] = result.vms
    assert vm.cancelled and vm.error == "stopped at the window's end"
    assert await stack.client.list_restore_points(plan="nightly") == []
    assert repo_point_ids(stack) == set()
    assert stack.driver.list_snapshots(vm_id) == []  # the backup's snapshot was deleted
    assert list((stack.repo_path / "staging").iterdir()) == []  # and its partial files
    assert_image(stack.driver, "big", source, "source after the stopped backup")  # the VM's data is untouched


async def test_scheduled_runs_keep_the_window_and_the_pause_and_manual_runs_do_not(stack: Stack) -> None:
    """The documented rule (docs/concepts.md, "Manual runs"): the window and the pause gate
    only what the schedule starts; an operator's manual run backs up at once."""
    stack.make_vm("w1", size=2 * MiB)
    source = capture(stack.driver, "w1")
    start = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    await stack.client.create_backup_plan(plan_spec(
        "offhours", ["w1"], window={"start": start.strftime("%H:%M"), "end": (start + timedelta(hours=1)).strftime("%H:%M")},
        schedule={"kind": "MINUTELY", "interval": 5}))
    outside = await trigger_and_wait(stack, "offhours")
    assert outside.result == RunResult.NEVER_EXECUTE and "outside the window" in outside.skipped_reason
    await stack.client.set_backup_plan_paused("offhours", True)
    paused = await trigger_and_wait(stack, "offhours")
    assert paused.result == RunResult.PAUSED and paused.skipped_reason == "plan is paused"
    assert await stack.client.list_restore_points(plan="offhours") == []
    manual = await run_plan(stack, "offhours")  # paused and outside its window, it still runs
    assert manual.result == RunResult.SUCCESS, manual
    await assert_points_restore(stack, point_oracles(manual, {"w1": source}))


async def test_overlapping_runs_are_skipped_or_refused(stack: Stack) -> None:
    stack.make_vm("big", size=8 * MiB)
    source = capture(stack.driver, "big")
    stack.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=20))
    await stack.client.create_backup_plan(plan_spec("slow", ["big"]))
    running = await stack.client.run_backup_plan("slow")
    with pytest.raises(AbdrError, match="backup plan 'slow' is already running; a manual run never runs alongside it"):
        await stack.client.run_backup_plan("slow")
    skipped = await trigger_and_wait(stack, "slow")
    assert skipped.skipped_reason == "skipped: the previous run of this plan is still running"
    done = await stack.client.plan_run_result(running)
    assert done.result == RunResult.SUCCESS
    assert len(await stack.client.list_restore_points(plan="slow")) == 1
    await assert_points_restore(stack, point_oracles(done, {"big": source}))


async def _state(stack: Stack) -> tuple:
    plans = await stack.client.list_backup_plans()
    scheds = [s.id async for s in await stack.client.client.list_schedules()]
    return (plans, await stack.client.list_repositories(), sorted(scheds),
            await stack.client.list_restore_points())


async def test_bad_inputs_are_refused_and_change_nothing(stack: Stack) -> None:
    stack.make_vm("a", size=2 * MiB)
    stack.make_vm("b", size=2 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["a"]))
    point = (await run_plan(stack, "gold")).vms[0].point_id
    before = await _state(stack)
    disks = {vm: capture(stack.driver, vm) for vm in ("a", "b")}

    with pytest.raises(AbdrError, match="VM 'ghost' not found on cluster 'c1'"):
        await stack.client.create_backup_plan(plan_spec("silver", ["ghost"]))
    with pytest.raises(AbdrError, match="VM 'ghost' not found on cluster 'c1' \\(and 1 more VMs of the plan\\)"):
        await stack.client.create_backup_plan(plan_spec("silver", ["a", "ghost", "b", "ghost2"]))
    with pytest.raises(AbdrError, match="cluster 'nowhere' not found"):
        await stack.client.create_backup_plan(plan_spec("silver", ["a"]).model_copy(
            update={"vms": [VMRef(cluster="nowhere", vm="a")]}))
    with pytest.raises(AbdrError, match="backup plan 'gold' already exists"):
        await stack.client.create_backup_plan(plan_spec("gold", ["b"]))
    with pytest.raises(AbdrError, match="repository 'nope' not found"):
        await stack.client.create_backup_plan(plan_spec("silver", ["a"], repository="nope"))
    missing = stack.tmp / "not-mounted" / "repo"
    with pytest.raises(AbdrError, match=f"parent directory {missing.parent} does not exist"):
        await stack.client.create_repository(RepositorySpec(name="r2", path=str(missing), site="default"))
    with pytest.raises(AbdrError, match=f"restore point '{point}' belongs to VM c1/a, not c1/b"):
        h = await stack.client.restore(RestoreRequest(point_id=point, mode=RestoreMode.INPLACE, vm="c1/b"))
        await stack.client.restore_result(h)
    with pytest.raises(AbdrError, match="restore point 'no-such-point' not found"):
        await stack.client.restore(RestoreRequest(point_id="no-such-point", mode=RestoreMode.INPLACE))
    with pytest.raises(AbdrError, match="a VM named 'b' already exists on cluster 'c1'"):
        h = await stack.client.restore(RestoreRequest(point_id=point, mode=RestoreMode.REBUILD, new_name="b"))
        await stack.client.restore_result(h)

    assert await _state(stack) == before
    assert not missing.parent.exists()
    for vm, image in disks.items():  # no refused restore wrote a byte
        assert_image(stack.driver, vm, image, f"{vm} after the refused requests")
    await assert_points_restore(stack, {point: disks["a"]})


async def test_deleting_a_plan_keeps_or_deletes_its_points_as_asked(stack: Stack) -> None:
    stack.make_vm("a", size=2 * MiB)
    source = capture(stack.driver, "a")
    for name in ("keep", "drop"):
        await stack.client.create_backup_plan(plan_spec(name, ["a"]))
        await run_plan(stack, name)
    kept = {p.id for p in await stack.client.list_restore_points(plan="keep")}
    dropped = {p.id for p in await stack.client.list_restore_points(plan="drop")}
    await stack.client.delete_backup_plan("keep", delete_points=False)
    await stack.client.delete_backup_plan("drop", delete_points=True)
    assert {p.id for p in await stack.client.list_restore_points()} == kept
    assert repo_point_ids(stack) == kept and not dropped & repo_point_ids(stack)
    assert [s.id async for s in await stack.client.client.list_schedules()] == []
    with pytest.raises(AbdrError, match="backup plan 'keep' not found"):
        await stack.client.get_backup_plan("keep")
    await assert_points_restore(stack, {pid: source for pid in kept})  # what was kept still restores exactly


async def test_maintenance_verifies_and_marks_damaged_points(stack: Stack) -> None:
    stack.make_vm("a", size=2 * MiB)
    source = capture(stack.driver, "a")
    await stack.client.create_backup_plan(plan_spec("m", ["a"]))
    point = (await run_plan(stack, "m")).vms[0].point_id
    clean = await stack.client.result(await stack.client.maintain_repository("r1", verify=True, prune=True, gc=True))
    assert clean.verified_points == 1 and clean.damaged == []
    await assert_points_restore(stack, {point: source})  # what verify called clean restores exactly
    chunk = max((stack.repo_path / "chunks").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else -1)
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte on the storage
    chunk.write_bytes(bytes(blob))
    report = await stack.client.result(await stack.client.maintain_repository("r1"))
    assert {d["point_id"] for d in report.damaged} == {point}
    assert (await stack.client.get_restore_point(point)).state == "DAMAGED"


async def test_health_probe_runs_on_the_site_worker(stack: Stack) -> None:
    probe = await status.run_probe(stack.client.client, "default")
    assert probe["ok"] and probe["site"] == "default" and probe["task_queue"] == "abdr-site-default", probe
