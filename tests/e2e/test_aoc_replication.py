"""Replication and disaster recovery on AOC clusters: cross-site (two AOC simulators as
separate processes, one per site) and intra-site (one simulator, two of its clusters), the
real dev server, an orchestrator and a worker per site as processes; byte-exact at every
step, and the AOC's own process killed where the product says what then works and what not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.aoc import AocDriver
from drivers.local.tools import rewrite_fraction
from models.inventory import ShutdownMode
from models.requests import FailbackRequest, FailoverRequest, UndoFailoverRequest
from starter.client import AbdrError
from tests.drivers.aoc_sim import SIM, SIM_B, SimProcess
from tests.e2e.processes import DevServer
from tests.e2e.test_replication import (  # noqa: F401 (server: the module's dev server fixture)
    DR,
    WRITTEN,
    dr_result,
    dr_world,
    drill_beside_replication,
    make_vm,
    permanent_failover_with_reprotect,
    plan,
    replica,
    replicate,
    server,
)

VLANS = ("prod", "dr-net", "isolated")


@asynccontextmanager
async def aoc_world(server: DevServer, tmp_path: Path, sim_a: SimProcess, sim_b: SimProcess,  # noqa: F811
                    sites: tuple[str, str] = ("a", "b")) -> AsyncIterator[DR[Any]]:
    """dr_world with cluster ca in `sim_a` and cb in `sim_b` (fresh clusters, removed after)."""
    ep_a, ep_b = sim_a.fresh_cluster(VLANS), sim_b.fresh_cluster(VLANS)
    try:
        async with dr_world(server, tmp_path, {"ca": ("aoc", ep_a), "cb": ("aoc", ep_b)}, sites) as world:
            yield world
    finally:
        sim_a.remove_cluster(ep_a)
        sim_b.remove_cluster(ep_b)


@pytest.fixture
async def aoc_dr(server: DevServer, tmp_path: Path) -> AsyncIterator[DR[Any]]:  # noqa: F811
    async with aoc_world(server, tmp_path, SIM, SIM_B) as world:
        yield world


@pytest.fixture
def own_sim() -> Any:
    """An AOC simulator of the test's own, which the test may kill (the session's stay up)."""
    sim = SimProcess()
    yield sim
    sim.stop()


@pytest.fixture
async def aoc_dr_own_source(server: DevServer, tmp_path: Path, own_sim: SimProcess) -> AsyncIterator[DR[Any]]:  # noqa: F811
    """Cross-site, site a's AOC the test's own."""
    async with aoc_world(server, tmp_path, own_sim, SIM_B) as world:
        yield world


@pytest.fixture
async def aoc_intra(server: DevServer, tmp_path: Path, own_sim: SimProcess) -> AsyncIterator[DR[Any]]:  # noqa: F811
    """Intra-site: clusters ca and cb of one AOC (the test's own), both on site a."""
    async with aoc_world(server, tmp_path, own_sim, own_sim, sites=("a", "a")) as world:
        yield world


async def test_replicate_drill_failover_failback_and_failover_with_the_source_aoc_down(
        aoc_dr_own_source: DR[AocDriver], own_sim: SimProcess) -> None:
    dr = aoc_dr_own_source
    src_id = make_vm(dr.a, "web")
    seed = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    [r1] = (await replicate(dr)).vms
    assert r1.seeded and r1.moved_bytes == WRITTEN
    dr.same(dr.b, "web-replica", seed, "replica after the seed")
    assert dr.b.find_vm("web-replica").config.nics[0].network == "dr-net"
    during = await drill_beside_replication(dr, src_id, seed, r1.point_id)
    dr.same(dr.b, "web-replica", during, "replica after the drill's cleanup")

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

    rewrite_fraction(dr.a, src_id, "disk0", 0.02, seed=6)
    last = dr.disk(dr.a, "web")
    await replicate(dr)
    own_sim.kill()  # site a's AOC is gone (its worker still runs; its VM may still be running)
    lost = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    assert lost.state == "FAILOVER" and lost.details["source"] == "unreachable (not fenced)"
    assert dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", last, "replica failed over with the source's AOC down")


async def test_permanent_failover_with_reprotect_between_two_aocs(aoc_dr: DR[AocDriver]) -> None:
    await permanent_failover_with_reprotect(aoc_dr)


async def test_intra_site_failover_and_its_refusal_with_the_aoc_down(aoc_intra: DR[AocDriver],
                                                                    own_sim: SimProcess) -> None:
    dr = aoc_intra
    intra = plan(kind="INTRA_SITE", target_site="a")
    src_id = make_vm(dr.a, "web")
    seed = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(intra)
    [r1] = (await replicate(dr)).vms
    assert r1.seeded and r1.moved_bytes == WRITTEN
    dr.same(dr.b, "web-replica", seed, "intra-site replica after the seed")
    during = await drill_beside_replication(dr, src_id, seed, r1.point_id)
    dr.same(dr.b, "web-replica", during, "intra-site replica after the drill's cleanup")
    changed = rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=3)
    at_point = dr.disk(dr.a, "web")
    [r2] = (await replicate(dr)).vms
    assert not r2.seeded and r2.moved_bytes == sum(e.length for e in changed)
    dr.same(dr.b, "web-replica", at_point, "intra-site replica after the delta")

    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER" and fo.point_id == r2.point_id
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", at_point, "intra-site replica after failover")
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.03, seed=5)  # discarded by the undo
    undone = await dr_result(await dr.client.undo_failover(UndoFailoverRequest(plan="dr", vm="web")))
    assert undone.state == "READY" and undone.point_id == r2.point_id
    dr.same(dr.b, "web-replica", at_point, "intra-site replica after the undo")

    await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.03, seed=7)
    served = dr.disk(dr.b, "web-replica")
    fb = await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert fb.state == "READY" and 0 < fb.moved_bytes < fb.disk_bytes / 5
    dr.same(dr.a, "web", served, "original after an intra-site failback")
    assert dr.power(dr.a, "web") == "RUNNING" and dr.power(dr.b, "web-replica") == "STOPPED"

    before, history = await replica(dr), dr.transitions()
    own_sim.kill()  # the site's one AOC is gone: the product says an intra-site plan cannot fail over
    with pytest.raises(AbdrError, match=r"intra-site failover of ca/web is not possible, nothing was changed: "
                                        r"the AOC managing site a does not answer \(AOC http://127.0.0.1:\d+ does not answer "):
        await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    after = await replica(dr)  # the catalog holds what it held (the RPO lag grows with time)
    assert after.state == "READY" and after.owner is None and dr.transitions() == history
    assert after.model_dump(exclude={"rpo_lag_s"}) == before.model_dump(exclude={"rpo_lag_s"})


async def test_intra_site_permanent_failover_with_reprotect(aoc_intra: DR[AocDriver]) -> None:
    await permanent_failover_with_reprotect(aoc_intra, plan(kind="INTRA_SITE", target_site="a"))
