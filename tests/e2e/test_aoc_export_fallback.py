"""An AOC that exposes only the public API (the simulator run with --no-storage-access):
backups fall back to whole-volume reads through export-vm-volume, every point says why, and
every point restores byte for byte to what the guest wrote (the oracle: the bytes this test
wrote, never the driver's reads). Writes need the storage access: a restore onto that AOC is
refused with the reason; a REBUILD onto another cluster works."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from drivers import DRIVERS
from drivers.aoc import AocDriver
from models.inventory import DiskSpec, VMConfig
from models.plans import RunResult
from models.requests import RestoreMode, RestoreRequest
from models.restore_points import PointType
from tests.drivers.aoc_sim import SIM_BARE
from tests.e2e.conftest import MiB, Stack, running_stack
from tests.e2e.oracle import assert_image
from tests.quiet import quiet_time

SIZE = 1 * MiB
BLOCK = 64 << 10
NO_STORAGE = "exposes no storage access"


@pytest.fixture
async def bare_stack(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack[AocDriver]]:
    endpoint = SIM_BARE.fresh_cluster()
    try:
        async with running_stack(temporal_env, tmp_path, "aoc", endpoint) as s:
            await s.client.add_cluster("c2", "default", "local", str(tmp_path / "clusters" / "c2"))
            yield s
    finally:
        SIM_BARE.remove_cluster(endpoint)


def guest_writes(vm_id: str, oracle: dict[str, bytearray], blocks: dict[str, list[int]], seed: int) -> None:
    for disk, which in blocks.items():
        for b in which:
            data = hashlib.shake_256(f"{disk}/{b}/{seed}".encode()).digest(BLOCK)
            SIM_BARE.guest_write(vm_id, disk, b * BLOCK, data)
            oracle[disk][b * BLOCK:(b + 1) * BLOCK] = data


async def test_backups_without_storage_access_read_whole_volumes_and_say_why(bare_stack: Stack[AocDriver]) -> None:
    stack = bare_stack
    vm = stack.driver.create_vm(VMConfig(name="web", disks=[DiskSpec(name=f"disk{i}", size_bytes=SIZE, boot=i == 0)
                                                            for i in range(2)]))
    oracle = {"disk0": bytearray(SIZE), "disk1": bytearray(SIZE)}
    guest_writes(vm.id, oracle, {"disk0": [0, 3, 9], "disk1": [15]}, seed=1)
    at_first = {d: bytes(b) for d, b in oracle.items()}
    await stack.cli("backup-plan", "create", "gold", "--vm", "c1/web", "--repository", "r1",
                    "--schedule", f"daily {quiet_time()}", "--retention", "count:10")

    first = await stack.cli_json("backup-plan", "run", "gold", "--wait")
    assert first["result"] == RunResult.SUCCESS, first
    [r1] = first["vms"]
    assert r1["type"] == PointType.FULL and "first backup" in r1["full_reason"], r1
    assert NO_STORAGE in r1["full_reason"] and "export-vm-volume" in r1["full_reason"], r1
    assert [d["read_bytes"] for d in r1["disks"]] == [SIZE, SIZE]  # whole volumes, holes too

    guest_writes(vm.id, oracle, {"disk0": [3, 4]}, seed=2)
    at_second = {d: bytes(b) for d, b in oracle.items()}
    second = await stack.cli_json("backup-plan", "run", "gold", "--wait")
    [r2] = second["vms"]
    assert r2["type"] == PointType.FULL and NO_STORAGE in r2["full_reason"], r2  # no changed blocks to build on
    assert "first backup" not in r2["full_reason"], r2
    assert [d["read_bytes"] for d in r2["disks"]] == [SIZE, SIZE]
    assert not stack.driver.c.read("get-vm-export-files", {"vm": {"id": vm.id}})  # every export file deleted

    local = stack.client  # each point restores exactly, onto a cluster that takes writes
    c2 = DRIVERS["local"].open(str(stack.tmp / "clusters" / "c2"), "c2")
    for r, expected, name in ((r1, at_first, "web-1"), (r2, at_second, "web-2")):
        h = await local.restore(RestoreRequest(point_id=r["point_id"], mode=RestoreMode.REBUILD,
                                               target_cluster="c2", new_name=name))
        await local.restore_result(h)
        assert_image(c2, name, expected, f"point {r['point_id']} rebuilt on c2")

    code, out = await stack.run_cli("restore", r2["point_id"], "--mode", "inplace", "--vm", "c1/web", "--wait")
    assert code != 0 and NO_STORAGE in " ".join(out.split()), out
    assert stack.driver.get_vm(vm.id).config.disks == vm.config.disks  # the refusal changed nothing
