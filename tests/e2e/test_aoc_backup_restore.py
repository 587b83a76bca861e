"""A backup plan and restores through the aoc driver: the real dev server, the in-process
worker, an AOC simulator as a separate process (tests/drivers/aoc_sim.py) and the
repository; every point checked byte for byte against the disks it was taken of."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from drivers.aoc import AocDriver
from drivers.local.tools import rewrite_fraction
from drivers.repository.config import load_config
from models.plans import RunResult
from models.requests import RestoreMode, RestoreRequest
from models.restore_points import PointType
from tests.drivers.aoc_sim import SIM
from tests.e2e.conftest import MiB, Stack, running_stack
from tests.e2e.oracle import assert_image, capture, touched_chunk_bytes
from tests.e2e.test_backup_restore import plan_spec, run_plan


@pytest.fixture
async def aoc_stack(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack[AocDriver]]:
    endpoint = SIM.fresh_cluster()
    try:
        async with running_stack(temporal_env, tmp_path, "aoc", endpoint) as s:
            yield s
    finally:
        SIM.remove_cluster(endpoint)


async def test_full_incremental_and_restores_through_the_aoc(aoc_stack: Stack[AocDriver]) -> None:
    stack = aoc_stack
    vm_id = stack.make_vm("web", disks=2, size=4 * MiB)
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    state1 = capture(stack.driver, "web")

    first = await run_plan(stack, "gold")
    assert first.result == RunResult.SUCCESS, first
    [r1] = first.vms
    assert r1.type == PointType.FULL

    changed = rewrite_fraction(stack.driver, vm_id, "disk0", 0.05, seed=7)
    state2 = capture(stack.driver, "web")
    assert state2["disk0"] != state1["disk0"] and state2["disk1"] == state1["disk1"]
    second = await run_plan(stack, "gold")
    [r2] = second.vms
    assert r2.type == PointType.INCREMENTAL and r2.ok, r2
    disk0, disk1 = r2.disks
    touched = touched_chunk_bytes(changed, load_config(stack.repo_path).chunk_size, 4 * MiB)
    assert touched < 4 * MiB // 2, touched
    assert 0 < disk0.read_bytes <= touched, (disk0.read_bytes, touched)  # the storage's changed extents
    assert disk1.read_bytes == 0
    assert [s.name for s in stack.driver.list_snapshots(vm_id)] == [f"abdr-{r2.point_id}"]

    h = await stack.client.restore(RestoreRequest(point_id=r1.point_id, mode=RestoreMode.REBUILD, new_name="web-copy"))
    rebuilt = await stack.client.restore_result(h)
    assert rebuilt.vm.vm == "web-copy"
    assert_image(stack.driver, "web-copy", state1)

    rewrite_fraction(stack.driver, vm_id, "disk1", 0.02, seed=9)
    h = await stack.client.restore(RestoreRequest(point_id=r2.point_id, mode=RestoreMode.INPLACE, vm="c1/web",
                                                  power_on=True))
    inplace = await stack.client.restore_result(h)
    assert_image(stack.driver, "web", state2, "web restored in place")
    assert 0 < inplace.written_bytes < inplace.total_bytes / 4
    assert stack.driver.get_vm(vm_id).power_state == "RUNNING"
