"""Backup plans and restore end to end: the real dev server, the in-process worker, the
local driver and the repository, every result checked byte for byte."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from drivers.local.tools import rewrite_fraction
from drivers.repository.config import load_config
from models.plans import BackupPlanSpec, RunResult
from models.requests import RestoreMode, RestoreRequest
from models.restore_points import PointCreation, PointType
from tests.e2e.conftest import MiB, Stack
from tests.e2e.oracle import assert_image, assert_point_restores_to, capture, touched_chunk_bytes
from tests.quiet import quiet_time


def plan_spec(name: str, vms: list[str], **over: Any) -> BackupPlanSpec:
    data: dict[str, Any] = {
        "name": name, "vms": [{"cluster": "c1", "vm": v} for v in vms], "repository": "r1",
        "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 10}}
    data.update(over)
    return BackupPlanSpec.model_validate(data)


async def run_plan(stack: Stack, plan: str, full: bool = False):
    handle = await stack.client.run_backup_plan(plan, full=full)
    return await stack.client.plan_run_result(handle)


async def test_full_then_incremental_then_restores_are_byte_exact(stack: Stack) -> None:
    started = datetime.now(timezone.utc)
    stack.make_vm("web", disks=2, size=8 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    state1 = capture(stack.driver, "web")  # the oracle of each point: the disks just before it

    first = await run_plan(stack, "gold")
    assert first.result == RunResult.SUCCESS, first
    [r1] = first.vms
    assert r1.type == PointType.FULL and r1.full_reason == "first backup of this VM in the plan"
    assert sum(d.zero_chunks for d in r1.disks) > 0  # the holes were not stored

    vm = stack.driver.find_vm("web")
    changed = rewrite_fraction(stack.driver, vm.id, "disk0", 0.05, seed=7)
    state2 = capture(stack.driver, "web")
    assert state2["disk0"] != state1["disk0"] and state2["disk1"] == state1["disk1"]

    second = await run_plan(stack, "gold")
    [r2] = second.vms
    assert r2.type == PointType.INCREMENTAL and r2.ok
    disk0, disk1 = r2.disks
    # Only the chunks the writes touched were read: at most their bytes, well below the disk.
    touched = touched_chunk_bytes(changed, load_config(stack.repo_path).chunk_size, 8 * MiB)
    assert touched < 8 * MiB // 2, touched  # the bound means something
    assert 0 < disk0.read_bytes <= touched, (disk0.read_bytes, touched)
    assert disk1.read_bytes == 0 and disk1.carried_chunks > 0  # an untouched disk is not read at all

    points = await stack.client.list_restore_points(plan="gold")
    assert [(p.type, p.creation) for p in points] == [("FULL", "MANUAL"), ("INCREMENTAL", "MANUAL")]
    # What a user filtering by plan in the Web UI sees: the plan's runs and its VMs' backups, done.
    # (this test's runs only: the session's dev server keeps other tests' runs of a plan gold)
    runs = [w async for w in stack.client.client.list_workflows(
        f"AbdrPlan = 'gold' AND StartTime >= '{started.isoformat()}'")]
    assert {w.workflow_type for w in runs} == {"BackupPlanRun", "VMBackup"}
    backups = [w async for w in stack.client.client.list_workflows(
        "AbdrPlan = 'gold' AND AbdrVM = 'c1/web' AND AbdrPhase = 'done' AND WorkflowType = 'VMBackup' "
        f"AND StartTime >= '{started.isoformat()}'")]
    assert len(backups) == 2
    # Only the newest point keeps its snapshot (the next incremental's base).
    assert [s.name for s in stack.driver.list_snapshots(vm.id)] == [f"abdr-{r2.point_id}"]

    # REBUILD the first point as a new VM: equals the source at the first backup.
    h = await stack.client.restore(RestoreRequest(point_id=r1.point_id, mode=RestoreMode.REBUILD, new_name="web-copy"))
    rebuilt = await stack.client.restore_result(h)
    assert_image(stack.driver, "web-copy", state1)
    assert rebuilt.vm.vm == "web-copy" and not rebuilt.powered_on

    # Write more on the VM, then restore the first point in place: only what differs is
    # written (the changed blocks since the base snapshot and the blocks the points differ in).
    rewrite_fraction(stack.driver, vm.id, "disk1", 0.02, seed=9)
    h = await stack.client.restore(RestoreRequest(point_id=r1.point_id, mode=RestoreMode.INPLACE, vm="c1/web",
                                                  power_on=True))
    inplace = await stack.client.restore_result(h)
    assert_image(stack.driver, "web", state1, "web restored in place")
    assert 0 < inplace.written_bytes < inplace.total_bytes / 4
    assert stack.driver.get_vm(vm.id).power_state == "RUNNING"

    # And the second point still restores exactly (points are independent).
    await assert_point_restores_to(stack.client, stack.driver, r2.point_id, state2, "web-2")


async def test_new_backup_after_base_snapshot_lost_is_full_with_reason(stack: Stack) -> None:
    vm_id = stack.make_vm("db")
    await stack.client.create_backup_plan(plan_spec("p", ["db"]))
    at_first = capture(stack.driver, "db")
    first = await run_plan(stack, "p")
    [snap] = stack.driver.list_snapshots(vm_id)
    stack.driver.delete_snapshot(vm_id, snap.id)  # someone removed the CBT base
    rewrite_fraction(stack.driver, vm_id, "disk0", 0.05, seed=3)  # written while no base tracks changes
    at_second = capture(stack.driver, "db")
    second = await run_plan(stack, "p")
    [r] = second.vms
    assert r.type == PointType.FULL and "is gone" in r.full_reason
    assert first.vms[0].point_id != r.point_id
    rewrite_fraction(stack.driver, vm_id, "disk0", 0.05, seed=4)
    at_forced = capture(stack.driver, "db")
    forced = await run_plan(stack, "p", full=True)
    assert forced.vms[0].type == PointType.FULL and forced.vms[0].full_reason == "manual --full"
    points = await stack.client.list_restore_points(plan="p")
    assert all(p.creation == PointCreation.MANUAL for p in points) and len(points) == 3
    for result, oracle in ((first, at_first), (second, at_second), (forced, at_forced)):  # each restores exactly
        await assert_point_restores_to(stack.client, stack.driver, result.vms[0].point_id, oracle, "db-check")


async def test_backup_after_newest_point_deleted_says_why_it_is_full(stack: Stack) -> None:
    """Older points exist but none keeps a changed-block snapshot (only the newest does):
    the full backup says its base was deleted, not that it is the VM's first."""
    vm_id = stack.make_vm("app")
    await stack.client.create_backup_plan(plan_spec("silver", ["app"]))
    await stack.cli("backup-plan", "run", "silver", "--wait")
    rewrite_fraction(stack.driver, vm_id, "disk0", 0.05, seed=5)
    second = await stack.cli_json("backup-plan", "run", "silver", "--wait")
    [r2] = second["vms"]
    assert r2["type"] == "INCREMENTAL", r2
    first_id = [p["id"] for p in await stack.cli_json("restore-point", "list", "--plan", "silver")][0]
    await stack.cli("restore-point", "delete", r2["point_id"])
    assert stack.driver.list_snapshots(vm_id) == [], "the deleted point's changed-block snapshot stayed"
    at_third = capture(stack.driver, "app")
    third = await stack.cli_json("backup-plan", "run", "silver", "--wait")
    [r3] = third["vms"]
    assert r3["type"] == "FULL" and "first backup" not in r3["full_reason"], r3
    assert "base was deleted" in r3["full_reason"] and first_id in r3["full_reason"], r3
    await assert_point_restores_to(stack.client, stack.driver, r3["point_id"], at_third, "app-check")
    assert len(stack.driver.list_snapshots(vm_id)) == 1  # the third point's base, nothing else
