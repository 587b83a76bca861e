"""Replication and disaster recovery end to end: a real dev server, an orchestration worker
and two site workers as separate processes on loopback (the data moves between the two
site workers over the authenticated transport), byte-exact at every step."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from drivers import DRIVERS
from drivers.base import ClusterDriver
from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from drivers.local.tools import rewrite_fraction
from models.admin import ReplicaView
from models.ids import replicate_id
from models.inventory import NIC, DiskSpec, ShutdownMode, Site, VMConfig
from models.plans import RunResult
from models.replication import ReplicationPlanSpec
from models.replication_jobs import DrOperationResult, PullProgress, ReplicationRunResult
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    FailoverTestRequest,
    PermanentFailoverRequest,
    UndoFailoverRequest,
)
from models.services import ReplicationService
from starter.client import AbdrClient, AbdrError
from starter.runtime.settings import Settings
from tests.e2e.histories import quiesce
from tests.e2e.observe import wait_heartbeat
from tests.e2e.oracle import assert_same_bytes, read_disk
from tests.e2e.processes import WORKER_ROLES, DevServer, WorkerProcess
from tests.e2e.test_plans import trigger_and_wait
from tests.quiet import quiet_time

MiB = 1 << 20
SIZE = 16 * MiB
WRITTEN = SIZE * 3 // 4  # make_vm leaves one 512 KiB block in four a hole


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    s = DevServer(tmp_path_factory.mktemp("temporal") / "temporal.db").start()
    yield s
    s.stop()


D = TypeVar("D", bound=ClusterDriver)


@dataclass
class DR(Generic[D]):
    server: DevServer
    tmp: Path
    catalog: Catalog
    a: D
    b: D
    env: dict[str, str]
    procs: dict[str, WorkerProcess] = field(default_factory=dict)
    client: AbdrClient | None = None

    def start(self, role: str) -> None:
        self.procs[role] = WorkerProcess(self.env, self.tmp / f"{role}-{len(self.procs)}.log", *WORKER_ROLES[role])

    def disk(self, driver: ClusterDriver, vm: str) -> bytes:
        return read_disk(driver, vm)

    def same(self, driver: ClusterDriver, vm: str, oracle: bytes, what: str) -> None:
        assert_same_bytes(read_disk(driver, vm), oracle, what)

    def transitions(self, vm: str = "web", plan: str = "dr") -> list[str]:
        """The replica's state changes, oldest first, read from the catalog (listings leave them out)."""
        page, total = self.catalog.replica_history(plan, vm, limit=10_000)
        assert len(page) == total, (len(page), total)
        # State changes only: rows where a claim was taken or let go keep their state.
        return [c.to_state.value for _, c in reversed(page) if c.from_state != c.to_state]

    def power(self, driver: ClusterDriver, vm: str) -> str:
        found = driver.find_vm(vm)
        assert found is not None
        return driver.get_vm(found.id).power_state


@asynccontextmanager
async def dr_world(server: DevServer, tmp_path: Path, clusters: dict[str, tuple[str, str]] | None = None,
                   sites: tuple[str, str] = ("a", "b")) -> AsyncIterator[DR[Any]]:
    """Sites a and b with clusters ca and cb (local directories unless `clusters` gives
    (driver, endpoint) for each; on sites a and b unless `sites` says otherwise: ("a", "a")
    for an intra-site pair), an orchestrator and a worker per site as processes."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    env = {"ABDR_TEMPORAL_ADDRESS": server.address, "ABDR_DATA_DIR": str(tmp_path / "state"),
           "ABDR_DATABASE_URL": url, "ABDR_SHUTDOWN_GRACE_S": "1", "ABDR_TRANSPORT_TOKEN": "test-token-123"}
    clusters = clusters or {c: ("local", str(tmp_path / c)) for c in ("ca", "cb")}
    catalog = Catalog(url)
    for site in ("a", "b"):
        catalog.add_site(Site(name=site))
    world: DR[Any] = DR(server, tmp_path, catalog, DRIVERS[clusters["ca"][0]].open(clusters["ca"][1], "ca"),
                        DRIVERS[clusters["cb"][0]].open(clusters["cb"][1], "cb"), env)
    for role in ("orchestrator", "a", "b"):
        world.start(role)
    client = await Client.connect(server.address, data_converter=pydantic_data_converter)
    world.client = AbdrClient(client, Settings(temporal_address=server.address, data_dir=tmp_path / "state",
                                               database_url=url))
    await quiesce(client)
    await world.client.add_cluster("ca", sites[0], *clusters["ca"])
    await world.client.add_cluster("cb", sites[1], *clusters["cb"])
    try:
        yield world
    finally:
        await quiesce(client)
        for p in world.procs.values():
            p.stop()
        catalog.close()


@pytest.fixture
async def dr(server: DevServer, tmp_path: Path) -> AsyncIterator[DR[LocalDriver]]:
    async with dr_world(server, tmp_path) as world:
        yield world


def make_vm(driver: ClusterDriver, name: str, size: int = SIZE) -> str:
    cfg = VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=size)],
                   nics=[NIC(name="nic0", network="prod", mac="52:54:00:12:34:56")])
    vm = driver.create_vm(cfg)
    with driver.open_disk(vm.id, "disk0", writable=True) as h:
        for off in range(0, size, 512 << 10):
            if (off // (512 << 10)) % 4:
                h.write(off, hashlib.shake_256(f"{name}/{off}".encode()).digest(512 << 10))
    driver.power_on(vm.id)
    return vm.id


def plan(name: str = "dr", **over: Any) -> ReplicationPlanSpec:
    data: dict[str, Any] = {
        "name": name, "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "ca", "target_site": "b",
        "target_cluster": "cb", "vms": [{"cluster": "ca", "vm": "web"}],
        "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 5},
        "network_mapping": [{"source": "prod", "target": "dr-net"}], "keep_mac": False}
    data.update(over)
    return ReplicationPlanSpec.model_validate(data)


async def replicate(dr: DR, name: str = "dr") -> ReplicationRunResult:
    result = await dr.client.result(await dr.client.run_replication_plan(name))
    assert result.result == RunResult.SUCCESS, result
    return result


async def replica(dr: DR, name: str = "dr") -> ReplicaView:
    [obj] = [o for o in await dr.client.list_replicas(name)]
    return obj


async def dr_result(handle: Any) -> DrOperationResult:
    return await AbdrClient.result(handle)


async def test_replicate_failover_failback_and_replicate_again(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    seed = dr.disk(dr.a, "web")  # oracles: the source's bytes before each point, captured here
    await dr.client.create_replication_plan(plan())
    assert (await replica(dr)).state == "NOT_READY"

    first = await replicate(dr)
    [r1] = first.vms
    assert r1.seeded and r1.moved_bytes == WRITTEN
    dr.same(dr.b, "web-replica", seed, "replica after the seed")
    cfg = dr.b.find_vm("web-replica").config
    assert cfg.nics[0].network == "dr-net" and cfg.nics[0].mac != "52:54:00:12:34:56"  # mapping, new MAC
    assert dr.power(dr.b, "web-replica") == "STOPPED"

    changed = rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=3)
    at_point = dr.disk(dr.a, "web")
    second = await replicate(dr)
    [r2] = second.vms
    assert not r2.seeded and r2.moved_bytes == sum(e.length for e in changed)  # changed extents only
    dr.same(dr.b, "web-replica", at_point, "replica after the delta")
    obj = await replica(dr)
    assert obj.state == "READY" and obj.rpo_lag_s is not None and obj.rpo_lag_s < 600

    rewrite_fraction(dr.a, src_id, "disk0", 0.02, seed=4)  # written after the last point: lost by failover
    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER" and fo.point_id == r2.point_id
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", at_point, "replica after failover")

    replica_id = dr.b.find_vm("web-replica").id
    rewrite_fraction(dr.b, replica_id, "disk0", 0.03, seed=5)  # the replica serves and changes
    served = dr.disk(dr.b, "web-replica")  # failback stops the replica before its final sync: nothing else writes
    fb = await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert fb.state == "READY"
    dr.same(dr.a, "web", served, "original after failback")
    dr.same(dr.b, "web-replica", served, "replica after failback")
    assert dr.power(dr.a, "web") == "RUNNING" and dr.power(dr.b, "web-replica") == "STOPPED"
    assert 0 < fb.moved_bytes < fb.disk_bytes / 5  # only what changed moved, not the disks
    points = await dr.client.list_restore_points(plan="dr")
    assert points[-1].creation == "FAILBACK"

    rewrite_fraction(dr.a, src_id, "disk0", 0.01, seed=6)
    again = dr.disk(dr.a, "web")
    third = await replicate(dr)
    assert not third.vms[0].seeded
    dr.same(dr.b, "web-replica", again, "replica after replicating again")
    states = dr.transitions()
    failover = states.index("FAILOVER")  # the catalog recorded the whole story, in order
    assert states[failover:failover + 3] == ["FAILOVER", "FAILBACK", "READY"], states
    assert "READY" in states[:failover] and states[-1] == "READY", states


async def test_scheduled_replication_fires_and_the_replica_matches(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=21)
    at_point = dr.disk(dr.a, "web")  # the oracle: the source's bytes when the scheduled run starts
    tick = await trigger_and_wait(dr, "dr", kind="replication", result_type=ReplicationRunResult)
    assert tick.result == RunResult.SUCCESS and len(tick.vms) == 1 and tick.vms[0].ok, tick
    dr.same(dr.b, "web-replica", at_point, "replica after the scheduled run")
    points = await dr.client.list_restore_points(plan="dr")
    assert points[-1].creation == "AUTO" and points[-1].id == tick.vms[0].point_id


async def drill_beside_replication(dr: DR, src_id: str, tested: bytes, point_id: str) -> bytes:
    """A failover test of web at its newest point `point_id` (the source held `tested` there)
    with a replication beside it, then its cleanup; returns the source's bytes at the point
    replicated during the drill (the replica's oracle from then on)."""
    await dr.client.start_failover_test(FailoverTestRequest(plan="dr", vm="web", test_network="isolated"))
    for _ in range(200):
        if dr.b.find_vm("web-replica-test") and dr.power(dr.b, "web-replica-test") == "RUNNING":
            break
        await asyncio.sleep(0.2)
    copy = dr.b.find_vm("web-replica-test")
    assert copy is not None and all(n.network == "isolated" for n in copy.config.nics)
    assert dr.power(dr.b, "web-replica-test") == "RUNNING"
    dr.same(dr.b, "web-replica-test", tested, "drill copy")
    assert (await replica(dr)).state == "FAILOVER_TEST"
    with pytest.raises(AbdrError, match="a failover test of dr/web is already running"):
        await dr.client.start_failover_test(FailoverTestRequest(plan="dr", vm="web"))

    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=8)
    newer = dr.disk(dr.a, "web")
    await replicate(dr)  # replication goes on during the drill
    dr.same(dr.b, "web-replica", newer, "replica replicated during the drill")
    dr.same(dr.b, "web-replica-test", tested, "drill copy after the replica moved on")  # still the tested point

    done = await dr.client.cleanup_failover_test("dr", "web")
    assert done.point_id == point_id
    assert dr.b.find_vm("web-replica-test") is None and (await replica(dr)).state == "READY"
    return newer


async def test_failover_test_runs_beside_replication_and_cleans_up(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    tested = dr.disk(dr.a, "web")  # the oracle of the drill: the source's bytes at the replica point
    await dr.client.create_replication_plan(plan())
    first = await replicate(dr)
    await drill_beside_replication(dr, src_id, tested, first.vms[0].point_id)


async def test_undo_failover_returns_to_the_last_point_and_replication_resumes(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    at_first = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=1)
    latest = dr.disk(dr.a, "web")
    second = await replicate(dr)
    older = (await dr.client.list_restore_points(plan="dr"))[0].id
    dr.a.power_off(src_id)
    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web", point=older)))
    assert fo.point_id == older
    dr.same(dr.b, "web-replica", at_first, "replica failed over to the older point")
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.05, seed=2)
    undone = await dr_result(await dr.client.undo_failover(UndoFailoverRequest(plan="dr", vm="web")))
    assert undone.state == "READY" and undone.point_id == second.vms[0].point_id
    dr.same(dr.b, "web-replica", latest, "replica after undo")
    assert dr.power(dr.b, "web-replica") == "STOPPED"
    dr.a.power_on(src_id)
    rewrite_fraction(dr.a, src_id, "disk0", 0.02, seed=3)
    again = dr.disk(dr.a, "web")
    await replicate(dr)
    dr.same(dr.b, "web-replica", again, "replica after replication resumed")


async def test_failover_refuses_a_running_source_without_fencing(dr: DR) -> None:
    make_vm(dr.a, "web")
    at_point = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    with pytest.raises(AbdrError, match="the source VM ca/web is running"):
        await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    assert (await replica(dr)).state == "READY" and dr.power(dr.b, "web-replica") == "STOPPED"
    dr.same(dr.b, "web-replica", at_point, "replica after the refused failover")
    dr.same(dr.a, "web", at_point, "source after the refused failover")


async def test_planned_failover_now_fences_the_source_and_syncs_last_changes(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    rewrite_fraction(dr.a, src_id, "disk0", 0.03, seed=12)  # changes since the last point: not lost with 'now'
    latest = dr.disk(dr.a, "web")
    dr.a.set_guest_behavior(src_id, refuse_shutdown=True)
    with pytest.raises(AbdrError, match="failover aborted: the source VM ca/web could not be stopped"):
        await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web", point="now",
                                                                 source_shutdown=ShutdownMode.SHUTDOWN)))
    assert dr.power(dr.a, "web") == "RUNNING" and (await replica(dr)).state == "READY"  # nothing changed
    fo = await dr_result(await dr.client.failover(FailoverRequest(
        plan="dr", vm="web", point="now", source_shutdown=ShutdownMode.SHUTDOWN_WITH_POWEROFF)))
    assert fo.state == "FAILOVER" and fo.details["final_sync_bytes"] > 0
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", latest, "replica after failover 'now'")
    dr.same(dr.a, "web", latest, "source after failover 'now'")
    points = await dr.client.list_restore_points(plan="dr")
    assert points[-1].creation == "FAILOVER" and points[-1].id == fo.point_id


async def test_unplanned_failover_with_the_source_site_down(dr: DR) -> None:
    make_vm(dr.a, "web")
    expected = dr.disk(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    dr.procs["a"].kill()  # the source site is gone: its worker dies (its VM may still be "running")
    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    assert fo.state == "FAILOVER" and fo.details["source"] == "unreachable (not fenced)"
    assert dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", expected, "replica after an unplanned failover")


async def permanent_failover_with_reprotect(dr: DR, spec: ReplicationPlanSpec | None = None) -> None:
    """Web replicated (by `spec`, default `plan()`) and failed over to its replica, which
    serves and changes; a permanent failover with reprotect makes the original the replica
    of a reverse plan, seeded by a delta, which then replicates."""
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(spec or plan())
    await replicate(dr)
    dr.a.power_off(src_id)
    await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.04, seed=9)
    served = dr.disk(dr.b, "web-replica")  # the replica serves; nothing but the test writes to it
    done = await dr_result(await dr.client.permanent_failover(PermanentFailoverRequest(plan="dr", vm="web",
                                                                                       reprotect=True)))
    assert done.state == "PERMANENT_FAILOVER"
    reverse = done.details["reverse_plan"]
    assert 0 < done.details["seed_moved_bytes"] < SIZE / 5  # the first reverse sync is a delta
    dr.same(dr.a, "web", served, "original after the reprotect seed")
    [back] = await dr.client.list_replicas(reverse)
    assert back.state == "READY" and back.source.vm == "web-replica" and back.replica.vm == "web"
    assert (await dr.client.get_replication_plan("dr")).status == "STOPPED"  # the original left the plan
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.02, seed=10)
    served = dr.disk(dr.b, "web-replica")
    again = await replicate(dr, reverse)
    assert not again.vms[0].seeded
    dr.same(dr.a, "web", served, "original after the reverse replication")


async def test_permanent_failover_with_reprotect_seeds_a_delta(dr: DR) -> None:
    await permanent_failover_with_reprotect(dr)


async def test_target_worker_killed_mid_replication_resumes(dr: DR) -> None:
    make_vm(dr.a, "web", size=4 * SIZE)
    written = 4 * WRITTEN
    at_point = dr.disk(dr.a, "web")  # nothing writes the source during the run
    dr.catalog.put_service(ReplicationService(name="b", site="b", replication_bandwidth_mbps=32))  # 4 MB/s: ~12 s
    await dr.client.create_replication_plan(plan())
    run = await dr.client.run_replication_plan("dr")
    # Kill the target's worker once the server holds durable progress of the pull.
    seen = await wait_heartbeat(dr.client.client, replicate_id("dr", "web"), "pull_extents", PullProgress,
                                "moved_bytes", 1)
    dr.procs["b"].kill()
    dr.start("b")
    result = await dr.client.result(run)
    assert result.result == RunResult.SUCCESS, result
    [r] = result.vms
    assert r.seeded and r.moved_bytes == written
    # The new worker pulled only what the dead one had not confirmed: a restart from zero
    # would put all the disk's data (incompressible here) on the wire again.
    assert 0 < r.wire_bytes <= written - seen.moved_bytes + written // 100, (r.wire_bytes, seen)
    dr.same(dr.b, "web-replica", at_point, "replica after the target worker was killed")


async def test_concurrent_dr_operations_on_one_vm_are_refused(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    dr.a.power_off(src_id)
    dr.catalog.put_service(ReplicationService(name="b", site="b", failback_bandwidth_mbps=8))
    await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web")))
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.3, seed=2)
    served = dr.disk(dr.b, "web-replica")
    first = await dr.client.failback(FailbackRequest(plan="dr", vm="web"))
    with pytest.raises(AbdrError, match="another disaster-recovery operation on dr/web is running"):
        await dr.client.failover(FailoverRequest(plan="dr", vm="web"))
    assert (await dr_result(first)).state == "READY"
    dr.same(dr.a, "web", served, "original after the failback")
