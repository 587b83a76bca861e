"""Cross-site replication, failover and failback between two AOCs: two AOC simulators as
separate processes (one per site), the real dev server, an orchestrator and a worker per site
as processes; byte-exact at every step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.aoc import AocDriver
from drivers.local.tools import rewrite_fraction
from models.inventory import ShutdownMode
from models.requests import FailbackRequest, FailoverRequest
from tests.drivers.aoc_sim import SIM, SIM_B
from tests.e2e.processes import DevServer
from tests.e2e.test_replication import (  # noqa: F401 (server: the module's dev server fixture)
    DR,
    WRITTEN,
    dr_result,
    dr_world,
    make_vm,
    plan,
    replica,
    replicate,
    server,
)

VLANS = ("prod", "dr-net")


@pytest.fixture
async def aoc_dr(server: DevServer, tmp_path: Path) -> AsyncIterator[DR[Any]]:  # noqa: F811
    ep_a, ep_b = SIM.fresh_cluster(VLANS), SIM_B.fresh_cluster(VLANS)
    try:
        async with dr_world(server, tmp_path, {"ca": ("aoc", ep_a), "cb": ("aoc", ep_b)}) as world:
            yield world
    finally:
        SIM.remove_cluster(ep_a)
        SIM_B.remove_cluster(ep_b)


async def test_replicate_failover_and_failback_between_two_aocs(aoc_dr: DR[AocDriver]) -> None:
    dr = aoc_dr
    src_id = make_vm(dr.a, "web")
    seed = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    [r1] = (await replicate(dr)).vms
    assert r1.seeded and r1.moved_bytes == WRITTEN
    dr.same(dr.b, "web-replica", seed, "replica after the seed")
    assert dr.b.find_vm("web-replica").config.nics[0].network == "dr-net"

    changed = rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=3)
    at_point = dr.disk(dr.a, "web")
    [r2] = (await replicate(dr)).vms
    assert not r2.seeded and r2.moved_bytes == sum(e.length for e in changed)  # the storage's changed extents
    dr.same(dr.b, "web-replica", at_point, "replica after the delta")
    assert (await replica(dr)).state == "READY"

    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER" and fo.point_id == r2.point_id
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", at_point, "replica after failover")

    # the replica serves (the simulator lets the test's writes play its guest's); failback
    # stops it, syncs what it changed back and starts the original
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.03, seed=5)
    served = dr.disk(dr.b, "web-replica")
    fb = await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert fb.state == "READY"
    dr.same(dr.a, "web", served, "original after failback")
    assert dr.power(dr.a, "web") == "RUNNING" and dr.power(dr.b, "web-replica") == "STOPPED"
    assert 0 < fb.moved_bytes < fb.disk_bytes / 5
