"""Plan runs at size, without timing (the figures are `python -m bench scale`'s): a plan of
a few hundred tiny VMs runs to completion with every point verified and a sample restored
byte-exact; a plan larger than its page continues as new and keeps every VM's result in
the catalog, shown whole by the client and `abdr job show`; the orchestration worker
SIGKILLed between pages loses no VM and doubles none."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from models.ids import plan_run_id, vm_backup_id
from models.inventory import DiskSpec, VMConfig
from models.plans import RunResult, VMRef
from models.requests import RestoreMode, RestoreRequest
from models.services import BackupService
from starter.client import AbdrClient
from tests.e2e.conftest import Stack
from tests.e2e.histories import export_chain
from tests.e2e.killable import KillableStack, MiB, killable_stack
from tests.e2e.oracle import assert_same_bytes
from tests.e2e.test_backup_restore import plan_spec

TINY = 256 << 10  # two 128 KiB chunks: the first written, the second a hole


def tiny_vms(driver: Any, n: int, prefix: str = "t") -> dict[str, bytes]:
    """n VMs of one tiny disk with bytes of their own; returns each VM's whole disk (the oracle)."""
    out = {}
    for i in range(n):
        name = f"{prefix}{i:03d}"
        vm = driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=TINY, boot=True)]))
        data = hashlib.shake_256(name.encode()).digest(TINY // 2)
        with driver.open_disk(vm.id, "disk0", writable=True) as h:
            h.write(0, data)
        out[name] = data + bytes(TINY // 2)
    return out


async def restores_exactly(client: AbdrClient, driver: Any, point_id: str, expected: bytes, name: str) -> None:
    await client.restore_result(await client.restore(RestoreRequest(point_id=point_id, mode=RestoreMode.REBUILD,
                                                                    new_name=name)))
    vm = driver.find_vm(name)
    assert vm is not None
    with driver.open_disk(vm.id, "disk0") as h:
        assert_same_bytes(h.read(0, h.size), expected, f"restore of {point_id}")


async def runs_of(client: AbdrClient, workflow_id: str) -> int:
    return len([w async for w in client.client.list_workflows(f"WorkflowId = '{workflow_id}'")])


async def test_a_plan_of_hundreds_of_tiny_vms_runs_with_every_point_restorable(stack: Stack) -> None:
    """200 VMs in one run (one page): every VM gets a point, the repository verifies every
    point's chunks, and a sample restores to the bytes each VM was written."""
    stack.catalog.put_service(BackupService(name="default", site="default", max_parallel_backups=16))
    disks = tiny_vms(stack.driver, 200)
    await stack.client.create_backup_plan(plan_spec("many", sorted(disks)))
    result = await stack.client.plan_run_result(await stack.client.run_backup_plan("many"))
    assert result.result == RunResult.SUCCESS, [v.error for v in result.vms if not v.ok][:5]
    assert (result.vms_total, result.vms_ok, len(result.vms)) == (200, 200, 200)
    points = stack.catalog.list_restore_points(plan="many")
    assert sorted(p.vm for p in points) == sorted(disks)  # one point each, none doubled
    verify = await stack.client.result(await stack.client.maintain_repository("r1"))
    assert verify.verified_points == 200 and verify.findings == 0, verify
    for name in random.Random(1).sample(sorted(disks), 6):
        [point] = [p for p in points if p.vm == name]
        await restores_exactly(stack.client, stack.driver, point.id, disks[name], f"{name}-r")


async def test_a_plan_larger_than_its_page_continues_as_new_with_every_vm_in_the_catalog(stack: Stack) -> None:
    """30 VMs in pages of 8: four workflow runs chained by continue-as-new; the result is a
    summary, the catalog holds all 30 VM results (the client and `job show` read them back
    whole), every VM has one point, and a sample restores exactly."""
    disks = tiny_vms(stack.driver, 30, prefix="p")
    await stack.client.create_backup_plan(plan_spec("paged", sorted(disks)))
    handle = await stack.client.run_backup_plan("paged", page_size=8)
    summary = await stack.client.result(handle)
    assert (summary.result, summary.vms_total, summary.vms_ok, summary.runs, summary.paged) == (
        RunResult.SUCCESS, 30, 30, 4, True)
    assert summary.vms == []  # bounded: the VMs' results are in the catalog
    assert await runs_of(stack.client, plan_run_id("paged")) == 4
    await export_chain(stack.client.client, plan_run_id("paged"), "pages")
    rows, total = stack.catalog.run_vms(plan_run_id("paged"), summary.run_id, 0, 100)
    assert total == 30 and [r.vm for r in rows] == [f"c1/{n}" for n in sorted(disks)] and all(r.ok for r in rows)
    whole = await stack.client.plan_run_result(stack.client.client.get_workflow_handle(
        plan_run_id("paged"), result_type=type(summary)))
    assert [v.vm.vm for v in whole.vms] == sorted(disks) and all(v.point_id for v in whole.vms)
    job = await stack.client.describe_job(plan_run_id("paged"))
    assert len(job.result["vms"]) == 30
    shown = await stack.cli("job", "show", plan_run_id("paged"))
    assert all(n in shown for n in disks), shown
    points = stack.catalog.list_restore_points(plan="paged")
    assert sorted(p.vm for p in points) == sorted(disks)
    assert {v.point_id for v in whole.vms} == {p.id for p in points}
    for name in ("p000", "p015", "p029"):  # first page, a middle one, the last
        [point] = [p for p in points if p.vm == name]
        await restores_exactly(stack.client, stack.driver, point.id, disks[name], f"{name}-r")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KillableStack]:
    with killable_stack(tmp_path) as stack:
        yield stack


async def test_orchestration_worker_killed_during_the_fan_out_loses_no_vm_and_doubles_none(
        world: KillableStack) -> None:
    """24 VMs in pages of 8, 2 at a time; the orchestration worker is SIGKILLed once the run
    has continued as new and VMs of its second page are done, and another one takes over.
    Every VM ends with exactly one point and one backup workflow run, and the catalog holds
    each VM's result once."""
    world.worker("site")
    orchestrator = world.worker("orchestration")
    client = await world.client()
    world.catalog.put_service(BackupService(name="default", site="default", max_parallel_backups=2))
    disks = {f"k{i:02d}": world.make_vm(f"k{i:02d}", MiB) for i in range(24)}
    await world.backup_plan(client, sorted(disks))
    handle = await client.run_backup_plan("p", page_size=8)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    while not (await runs_of(client, plan_run_id("p")) >= 2 and len(world.catalog.list_restore_points(plan="p")) >= 10):
        assert loop.time() < deadline, world.logs()
        await asyncio.sleep(0.2)
    # Listing jobs reconciles unfinished rows with Temporal: the chain's first run has ended
    # (continued as new), the job has not.
    [row] = [j for j in await client.list_jobs(plan="p") if j.workflow_id == plan_run_id("p")]
    assert row.status == "RUNNING" and row.run_id == handle.first_execution_run_id
    orchestrator.kill()
    world.worker("orchestration")
    result = await client.plan_run_result(handle)
    assert result.result == RunResult.SUCCESS, result
    [row] = [j for j in await client.list_jobs(plan="p") if j.workflow_id == plan_run_id("p")]
    assert row.status == "SUCCESS" and row.result["vms_total"] == 24
    assert [v.vm.vm for v in result.vms] == sorted(disks)
    points = world.catalog.list_restore_points(plan="p")
    assert sorted(p.vm for p in points) == sorted(disks)  # one point per VM: none lost, none doubled
    rows, total = world.catalog.run_vms(plan_run_id("p"), result.run_id, 0, 100)
    assert total == 24 and len({r.index for r in rows}) == 24
    for name in sorted(disks):
        assert await runs_of(client, vm_backup_id("p", "c1", name)) == 1, name
    for name in ("k00", "k12", "k23"):
        [point] = [p for p in points if p.vm == name]
        await restores_exactly(client, world.driver, point.id, disks[name], f"{name}-r")
    assert result.vms[0].vm == VMRef(cluster="c1", vm="k00")


async def activity_types(client: AbdrClient, workflow_id: str) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name
            async for e in client.client.get_workflow_handle(workflow_id).fetch_history_events()
            if e.HasField("activity_task_scheduled_event_attributes")]


async def child_starts(client: AbdrClient, workflow_id: str) -> list[str]:
    """The child workflow ids the newest run of `workflow_id` started (its history's own record)."""
    return [e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            async for e in client.client.get_workflow_handle(workflow_id).fetch_history_events()
            if e.HasField("start_child_workflow_execution_initiated_event_attributes")]


async def test_a_vm_unchanged_since_its_base_gets_its_point_without_a_new_snapshot(stack: Stack) -> None:
    """A run after no change: every VM still gets a point of its own (restorable to the same
    bytes), made from the base snapshot in the page's batch, with no child workflow: no
    snapshot taken or deleted, the new point holds the base snapshot now. A VM changed
    afterwards backs up incrementally from it again, through its child."""
    disks = tiny_vms(stack.driver, 3, prefix="u")
    await stack.client.create_backup_plan(plan_spec("same", sorted(disks)))
    first = await stack.client.plan_run_result(await stack.client.run_backup_plan("same"))
    ids = {n: stack.driver.find_vm(n).id for n in disks}  # type: ignore[union-attr]
    snaps = {n: [s.id for s in stack.driver.list_snapshots(i)] for n, i in ids.items()}
    assert all(len(s) == 1 for s in snaps.values())
    second = await stack.client.plan_run_result(await stack.client.run_backup_plan("same"))
    assert second.result == RunResult.SUCCESS
    assert all(v.full_reason.startswith("nothing changed since point") for v in second.vms), second.vms
    assert {n: [s.id for s in stack.driver.list_snapshots(i)] for n, i in ids.items()} == snaps  # none taken or deleted
    assert await child_starts(stack.client, plan_run_id("same")) == []  # Temporal's record: no child at all
    assert "carry_unchanged" in await activity_types(stack.client, plan_run_id("same"))
    for name in disks:
        assert await runs_of(stack.client, vm_backup_id("same", "c1", name)) == 1, name  # the first run's only
    for old, new in zip(first.vms, second.vms, strict=True):
        assert new.point_id != old.point_id
        assert stack.catalog.backup_base(old.vm, "same") == (new.point_id, snaps[old.vm.vm][0])
        assert stack.catalog.point_snapshot(old.point_id or "") is None
        await restores_exactly(stack.client, stack.driver, new.point_id or "", disks[old.vm.vm], f"{old.vm.vm}-r2")
    changed = hashlib.shake_256(b"changed").digest(TINY // 2)
    stack.driver.write(ids["u000"], "disk0", TINY // 2, changed)
    third = await stack.client.plan_run_result(await stack.client.run_backup_plan("same"))
    await export_chain(stack.client.client, plan_run_id("same"), "carry")  # replay histories
    assert await child_starts(stack.client, plan_run_id("same")) == [vm_backup_id("same", "c1", "u000")]
    by_vm = {v.vm.vm: v for v in third.vms}
    assert by_vm["u000"].full_reason.startswith("changes since point") and by_vm["u000"].disks[0].read_bytes > 0
    assert by_vm["u001"].full_reason.startswith("nothing changed since point")
    assert [s.id for s in stack.driver.list_snapshots(ids["u000"])] != snaps["u000"]  # the base moved on
    await restores_exactly(stack.client, stack.driver, by_vm["u000"].point_id or "",
                           disks["u000"][:TINY // 2] + changed, "u000-r3")
    await restores_exactly(stack.client, stack.driver, second.vms[0].point_id or "", disks["u000"], "u000-r2b")


async def test_a_no_change_run_of_tens_of_vms_starts_a_child_only_for_the_changed_one(stack: Stack) -> None:
    """20 tiny VMs, one of them changed before the second run: the plan run's history starts
    one child (the changed VM's); every VM gets a new point, the repository verifies all of
    them, and every new point restores to the bytes its VM holds (the oracle)."""
    disks = tiny_vms(stack.driver, 20, prefix="n")
    await stack.client.create_backup_plan(plan_spec("tens", sorted(disks)))
    first = await stack.client.plan_run_result(await stack.client.run_backup_plan("tens"))
    assert first.result == RunResult.SUCCESS and len(await child_starts(stack.client, plan_run_id("tens"))) == 20
    changed = hashlib.shake_256(b"n007 changed").digest(TINY // 4)
    stack.driver.write(stack.driver.find_vm("n007").id, "disk0", TINY // 2, changed)  # type: ignore[union-attr]
    disks["n007"] = disks["n007"][:TINY // 2] + changed + disks["n007"][TINY // 2 + len(changed):]
    second = await stack.client.plan_run_result(await stack.client.run_backup_plan("tens"))
    assert (second.result, second.vms_ok) == (RunResult.SUCCESS, 20), [v.error for v in second.vms if not v.ok]
    assert await child_starts(stack.client, plan_run_id("tens")) == [vm_backup_id("tens", "c1", "n007")]
    for name in disks:
        assert await runs_of(stack.client, vm_backup_id("tens", "c1", name)) == (2 if name == "n007" else 1), name
    by_vm = {v.vm.vm: v for v in second.vms}
    assert by_vm["n007"].full_reason.startswith("changes since point") and by_vm["n007"].disks[0].read_bytes > 0
    olds = {v.vm.vm: v.point_id for v in first.vms}
    points = stack.catalog.list_restore_points(plan="tens")
    assert len(points) == 40 and {p.id for p in points} == set(olds.values()) | {v.point_id for v in second.vms}
    rows, total = stack.catalog.run_vms(plan_run_id("tens"), second.run_id, 0, 100)
    assert total == 20 and [r.vm for r in rows] == [f"c1/{n}" for n in sorted(disks)] and all(r.ok for r in rows)
    verify = await stack.client.result(await stack.client.maintain_repository("r1"))
    assert verify.verified_points == 40 and verify.findings == 0, verify
    for name in sorted(disks):
        assert by_vm[name].point_id != olds[name]
        await restores_exactly(stack.client, stack.driver, by_vm[name].point_id or "", disks[name], f"{name}-r")


async def test_site_worker_killed_mid_batch_loses_no_point_and_doubles_none(world: KillableStack) -> None:
    """60 VMs, nothing changed since their first run: the site worker is SIGKILLed while the
    page's batch has given some VMs their points and not others; another one takes over (the
    batch is retried after its heartbeat times out). Every VM ends with exactly two points,
    no child was started for any of them in the second run, the retried batch found the
    points the killed one had made, and the points restore to the bytes written."""
    site = world.worker("site")
    world.worker("orchestration")
    client = await world.client()
    world.catalog.put_service(BackupService(name="default", site="default", max_parallel_backups=4))
    disks = {f"m{i:02d}": world.make_vm(f"m{i:02d}", MiB) for i in range(60)}
    await world.backup_plan(client, sorted(disks))
    first = await client.plan_run_result(await client.run_backup_plan("p"))
    assert first.result == RunResult.SUCCESS, first
    handle = await client.run_backup_plan("p")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    while (made := len(world.catalog.list_restore_points(plan="p"))) == 60:
        assert loop.time() < deadline, world.logs()
        await asyncio.sleep(0.02)
    site.kill()
    assert made < 120, "the batch ended before the kill: nothing was killed mid-batch"
    world.worker("site")
    result = await client.plan_run_result(handle)
    assert (result.result, result.vms_ok) == (RunResult.SUCCESS, 60), [v.error for v in result.vms if not v.ok]
    assert await child_starts(client, plan_run_id("p")) == []
    attempts = [e.activity_task_started_event_attributes.attempt
                async for e in client.client.get_workflow_handle(plan_run_id("p")).fetch_history_events()
                if e.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2, attempts  # the batch ran again
    points = world.catalog.list_restore_points(plan="p")
    assert sorted(p.vm for p in points) == sorted([*disks, *disks])  # none lost, none doubled
    assert {v.point_id for v in result.vms} == {p.id for p in points} - {v.point_id for v in first.vms}
    for name in sorted(disks):
        base = world.catalog.backup_base(VMRef(cluster="c1", vm=name), "p")
        [new] = [v.point_id for v in result.vms if v.vm.vm == name]
        assert base is not None and base[0] == new, name  # the snapshot was handed over once
    for name in ("m00", "m29", "m59"):
        [new] = [v.point_id for v in result.vms if v.vm.vm == name]
        await restores_exactly(client, world.driver, new or "", disks[name], f"{name}-r")
