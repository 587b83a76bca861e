"""A replication run after no change starts no Replicate child (issue 13): real worker
processes (an orchestrator, a worker per site), the page's sources checked on site a, the
replica points made on site b in one activity. Every VM still gets a replica point of its
own per run, which reads (and fails over) byte-exact to the bytes written (the oracle,
computed from what make_vm wrote, not read back); a changed VM still gets its child; the
target worker SIGKILLed mid-batch loses no point and doubles none."""

from __future__ import annotations

import asyncio
import hashlib

from models.ids import replicate_id, replication_run_id
from models.inventory import ShutdownMode
from models.plans import RunResult
from models.replication_jobs import ReplicationRunResult
from models.requests import FailoverRequest
from tests.e2e.histories import export_chain
from tests.e2e.oracle import assert_same_bytes, read_disk
from tests.e2e.test_plan_scale import activity_types, child_starts, runs_of
from tests.e2e.test_replication import DR, dr, dr_result, make_vm, plan, server  # noqa: F401 (fixtures)

MiB = 1 << 20
BLOCK = 512 << 10


def written(name: str, size: int) -> bytes:
    """What make_vm wrote: every fourth 512 KiB block a hole, the others of the VM's own bytes."""
    return b"".join(bytes(BLOCK) if not (off // BLOCK) % 4 else hashlib.shake_256(f"{name}/{off}".encode()).digest(BLOCK)
                    for off in range(0, size, BLOCK))


async def run(dr: DR, name: str) -> ReplicationRunResult:
    assert dr.client is not None
    result = await dr.client.result(await dr.client.run_replication_plan(name))
    assert (result.result, result.vms_ok) == (RunResult.SUCCESS, result.vms_total), \
        [v.error for v in result.vms if not v.ok]
    return result


def points_of(dr: DR, plan: str) -> dict[str, list[str]]:
    """Each source VM's replica points, oldest first."""
    out: dict[str, list[str]] = {}
    for p in dr.catalog.list_restore_points(plan=plan):
        out.setdefault(p.vm.removesuffix("-replica"), []).append(p.id)
    return out


def replica_at(dr: DR, vm: str, point_id: str) -> bytes:
    """The replica's disk as its point holds it (the point's snapshot)."""
    return read_disk(dr.b, f"{vm}-replica", snap_id=dr.catalog.point_snapshot(point_id))


async def test_a_no_change_replication_run_starts_no_child_and_its_points_fail_over_byte_exact(
        dr: DR) -> None:  # noqa: F811
    """Six VMs seeded (six children), then a run with nothing changed: its history starts no
    child, each VM gets a new replica point (READY, the RPO's last point moved on, the
    claim taken and let go as a child would), each point reads as the bytes written; a VM
    changed afterwards gets its child, and a carried point fails over byte-exact."""
    assert dr.client is not None
    size = 2 * MiB
    names = [f"c{i}" for i in range(6)]
    for n in names:
        make_vm(dr.a, n, size)
    await dr.client.create_replication_plan(plan("rc", vms=[{"cluster": "ca", "vm": n} for n in names]))
    seed = await run(dr, "rc")
    assert all(v.seeded for v in seed.vms)
    assert len(await child_starts(dr.client, replication_run_id("rc"))) == 6
    before = {o.source.vm: o for o in dr.catalog.replication_objects("rc")}
    snaps = {n: [s.id for s in dr.a.list_snapshots(dr.a.find_vm(n).id)] for n in names}  # type: ignore[union-attr]

    second = await run(dr, "rc")
    assert await child_starts(dr.client, replication_run_id("rc")) == []  # Temporal's record: no child at all
    assert {"check_sources_unchanged", "carry_replicas"} <= set(await activity_types(dr.client,
                                                                                     replication_run_id("rc")))
    for n in names:
        assert await runs_of(dr.client, replicate_id("rc", n)) == 1, n  # the seed's only
    assert {n: [s.id for s in dr.a.list_snapshots(dr.a.find_vm(n).id)] for n in names} == snaps  # type: ignore[union-attr]
    points = points_of(dr, "rc")
    for v in second.vms:
        n = v.vm.vm
        assert not v.seeded and v.moved_bytes == 0 and v.disk_bytes == size
        assert points[n] == [before[n].replica_point, v.point_id]  # one new point each
        obj = dr.catalog.replication_object("rc", n)
        assert (obj.state, obj.owner, obj.replica_point, obj.source_snapshot) == (
            "READY", None, v.point_id, before[n].source_snapshot)
        assert obj.last_point_at and before[n].last_point_at and obj.last_point_at > before[n].last_point_at
        assert dr.transitions(n, "rc")[-2:] == ["REPLICATING", "READY"]
        assert_same_bytes(replica_at(dr, n, v.point_id or ""), written(n, size), f"carried point of {n}")

    src = dr.a.find_vm("c3")
    assert src is not None
    changed = hashlib.shake_256(b"c3 changed").digest(BLOCK)
    dr.a.write(src.id, "disk0", 0, changed)
    third = await run(dr, "rc")
    await export_chain(dr.client.client, replication_run_id("rc"), "carry")  # replay histories
    assert await child_starts(dr.client, replication_run_id("rc")) == [replicate_id("rc", "c3")]
    by_vm = {v.vm.vm: v for v in third.vms}
    assert by_vm["c3"].moved_bytes == BLOCK and by_vm["c0"].moved_bytes == 0
    assert_same_bytes(replica_at(dr, "c3", by_vm["c3"].point_id or ""), changed + written("c3", size)[BLOCK:],
                      "the changed VM's point")
    for n in names:
        assert len(points_of(dr, "rc")[n]) == 3, n

    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="rc", vm="c1",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER" and fo.point_id == by_vm["c1"].point_id  # a carried point
    assert dr.power(dr.b, "c1-replica") == "RUNNING"
    dr.same(dr.b, "c1-replica", written("c1", size), "replica of c1 after failover to a carried point")


async def test_target_worker_killed_mid_batch_loses_no_point_and_doubles_none(dr: DR) -> None:  # noqa: F811
    """40 VMs, nothing changed since their seed: the target site's worker is SIGKILLed while
    the page's replica batch has made some points and not others; another takes over (the
    batch is retried after its heartbeat times out). Every VM ends with exactly two points,
    READY and unclaimed, no child started in that run, and each point reads as written."""
    assert dr.client is not None
    size = MiB
    names = [f"k{i:02d}" for i in range(40)]
    for n in names:
        make_vm(dr.a, n, size)
    await dr.client.create_replication_plan(plan("rk", vms=[{"cluster": "ca", "vm": n} for n in names]))
    seed = await run(dr, "rk")
    handle = await dr.client.run_replication_plan("rk")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    while (made := len(dr.catalog.list_restore_points(plan="rk"))) == 40:
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    dr.procs["b"].kill()
    assert made < 80, "the batch ended before the kill: nothing was killed mid-batch"
    dr.start("b")
    result = await dr.client.result(handle)
    assert (result.result, result.vms_ok) == (RunResult.SUCCESS, 40), [v.error for v in result.vms if not v.ok]
    assert await child_starts(dr.client, replication_run_id("rk")) == []
    attempts = [e.activity_task_started_event_attributes.attempt
                async for e in dr.client.client.get_workflow_handle(replication_run_id("rk")).fetch_history_events()
                if e.HasField("activity_task_started_event_attributes")]
    assert max(attempts) >= 2, attempts  # the batch ran again
    points = points_of(dr, "rk")
    olds = {v.vm.vm: v.point_id for v in seed.vms}
    for v in result.vms:
        n = v.vm.vm
        assert points[n] == [olds[n], v.point_id], n  # none lost, none doubled
        obj = dr.catalog.replication_object("rk", n)
        assert (obj.state, obj.owner, obj.replica_point) == ("READY", None, v.point_id), n
        assert_same_bytes(replica_at(dr, n, v.point_id or ""), written(n, size), f"point of {n}")
        snaps = dr.b.list_snapshots(dr.b.find_vm(f"{n}-replica").id)  # type: ignore[union-attr]
        assert sorted(s.name for s in snaps) == sorted(f"abdr-rp-{p}" for p in points[n]), n  # one per point
