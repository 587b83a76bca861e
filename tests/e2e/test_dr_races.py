"""DR operations that meet each other, end to end (real dev server, real worker processes,
real disks): a failover during a drill, during a replication run and as a `now` final
sync during one; a failback that fails after it stopped the replica. Each ends in a
consistent state, with byte-exact data against the source's bytes the test captured, and a
clear message where it refuses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.service import RPCError

from drivers.local.tools import rewrite_fraction
from models.ids import replicate_id
from models.inventory import ShutdownMode
from models.requests import NOW, FailbackRequest, FailoverRequest, FailoverTestRequest
from models.services import ReplicationService
from tests.e2e.test_replication import DR, dr, dr_result, make_vm, plan, replica, replicate, server  # noqa: F401,F811


async def until(check: Any, what: str, polls: int = 600) -> None:
    for _ in range(polls):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def pending(dr: DR, workflow_id: str, activity: str) -> bool:
    """Whether `activity` is running (scheduled or started) in the workflow."""
    try:
        desc = await dr.client.client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return False
    return any(p.activity_type.name == activity for p in desc.raw_description.pending_activities)


async def state(dr: DR) -> str:
    return (await replica(dr)).state


async def failure(handle: WorkflowHandle) -> str:
    """The message a refused run ends with (the cause chain, as the CLI prints it)."""
    with pytest.raises(WorkflowFailureError) as e:
        await handle.result()
    cause: BaseException | None = e.value.cause
    text = []
    while cause is not None:
        text.append(str(cause))
        cause = getattr(cause, "cause", None)
    return " <- ".join(text)


async def slow_replication_running(dr: DR, src_id: str) -> WorkflowHandle:
    """A replication run moving a quarter of the disk at 1 Mbps (about 15 s: long enough for
    the refused operations around it to run on a loaded machine, where 5% was not), seen
    writing into the replica."""
    dr.catalog.put_service(ReplicationService(name="b", site="b", replication_bandwidth_mbps=1))
    rewrite_fraction(dr.a, src_id, "disk0", 0.25, seed=41)
    run = await dr.client.run_replication_plan("dr")
    await until(lambda: pending(dr, replicate_id("dr", "web"), "pull_extents"), "the pull to start writing")
    assert (await replica(dr)).owner == replicate_id("dr", "web")
    return run


async def test_failover_during_a_drill_stays_a_failover(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=31)
    at_point = dr.disk(dr.a, "web")
    await replicate(dr)
    drill = await dr.client.start_failover_test(FailoverTestRequest(plan="dr", vm="web", test_network="isolated"))
    await until(lambda: _running(dr, "web-replica-test"), "the drill copy to run")
    assert await state(dr) == "FAILOVER_TEST"

    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER"
    await dr.client.cleanup_failover_test("dr", "web")
    ended = await dr_result(drill)
    assert ended.state == "FAILOVER"  # the drill's cleanup did not undo the failover on paper
    assert await state(dr) == "FAILOVER" and dr.b.find_vm("web-replica-test") is None
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", at_point, "replica serving after a failover during a drill")

    # The next scheduled replication does not write into the replica that serves production...
    skipped = await dr.client.result(await dr.client.run_replication_plan("dr"))
    assert not skipped.vms[0].ok and "FAILOVER" in skipped.vms[0].error
    dr.same(dr.b, "web-replica", at_point, "serving replica after a replication attempt")
    # ... and failback is not refused.
    replica_id = dr.b.find_vm("web-replica").id
    rewrite_fraction(dr.b, replica_id, "disk0", 0.02, seed=32)
    served = dr.disk(dr.b, "web-replica")
    fb = await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert fb.state == "READY"
    dr.same(dr.a, "web", served, "original after failback")


async def test_failover_during_a_replication_run_is_refused_and_changes_nothing(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    run = await slow_replication_running(dr, src_id)
    at_second = dr.disk(dr.a, "web")

    for point in ("latest", NOW):  # `now` would collide with the running replication's final sync
        refused = await dr.client.failover(FailoverRequest(plan="dr", vm="web", point=point,
                                                           source_shutdown=ShutdownMode.POWEROFF))
        message = await failure(refused)
        assert "refused, nothing was changed" in message and "busy" in message, message
        assert dr.power(dr.a, "web") == "RUNNING", f"failover {point} stopped the source though it was refused"
    assert (await replica(dr)).owner == replicate_id("dr", "web")

    done = await dr.client.result(run)
    assert done.vms[0].ok, done
    dr.same(dr.b, "web-replica", at_second, "replica after the run the failover did not disturb")
    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER" and fo.point_id == done.vms[0].point_id
    dr.same(dr.b, "web-replica", at_second, "replica after failover")


async def test_a_replication_during_a_drill_holds_off_a_failover(dr: DR) -> None:
    """A drill keeps the replica FAILOVER_TEST while replication goes on; the replication
    still claims the replica, so a failover cannot roll it back under a running pull."""
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    drill = await dr.client.start_failover_test(FailoverTestRequest(plan="dr", vm="web", test_network="isolated"))
    await until(lambda: _running(dr, "web-replica-test"), "the drill copy to run")
    run = await slow_replication_running(dr, src_id)
    at_second = dr.disk(dr.a, "web")
    assert await state(dr) == "FAILOVER_TEST"
    message = await failure(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                     source_shutdown=ShutdownMode.POWEROFF)))
    assert "busy" in message and replicate_id("dr", "web") in message, message
    assert dr.power(dr.a, "web") == "RUNNING"
    assert (await dr.client.result(run)).vms[0].ok
    dr.same(dr.b, "web-replica", at_second, "replica replicated during the drill")
    await dr.client.cleanup_failover_test("dr", "web")
    assert (await dr_result(drill)).state == "READY"
    assert (await replica(dr)).owner is None


async def test_failover_now_syncs_under_its_own_claim(dr: DR) -> None:
    """The final sync runs under the failover's claim: a scheduled run that starts meanwhile
    is refused, and the replica ends equal to the source's last bytes."""
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    dr.catalog.put_service(ReplicationService(name="b", site="b", replication_bandwidth_mbps=1))
    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=51)
    last = dr.disk(dr.a, "web")  # the source is stopped by the failover: these are its final bytes
    fo_handle = await dr.client.failover(FailoverRequest(plan="dr", vm="web", point=NOW,
                                                         source_shutdown=ShutdownMode.POWEROFF))
    sync_id = f"{replicate_id('dr', 'web')}/final-sync"
    await until(lambda: pending(dr, sync_id, "pull_extents"), "the final sync")
    assert (await replica(dr)).owner == "dr/dr/web"
    racing = await dr.client.result(await dr.client.run_replication_plan("dr"))
    # Refused by the claim while the sync runs, or by the state once the failover switched.
    error = racing.vms[0].error
    refusals = ("busy: dr/dr/web holds it", "(held by dr/dr/web)", "is FAILOVER, not")
    assert not racing.vms[0].ok and any(r in error for r in refusals), racing
    fo = await dr_result(fo_handle)
    assert fo.state == "FAILOVER" and fo.details["final_sync_bytes"] > 0
    assert dr.power(dr.a, "web") == "STOPPED" and dr.power(dr.b, "web-replica") == "RUNNING"
    dr.same(dr.b, "web-replica", last, "replica after a `now` failover")
    assert (await replica(dr)).owner is None


async def test_a_failback_that_fails_after_stopping_the_replica_undoes_itself(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                             source_shutdown=ShutdownMode.POWEROFF)))
    replica_id = dr.b.find_vm("web-replica").id
    snapshots_before = {s.id for s in dr.b.list_snapshots(replica_id)}
    dr.catalog.put_service(ReplicationService(name="b", site="b", failback_bandwidth_mbps=1))
    rewrite_fraction(dr.b, replica_id, "disk0", 0.02, seed=61)  # the replica serves and changes
    handle = await dr.client.failback(FailbackRequest(plan="dr", vm="web"))
    wf = handle.id
    await until(lambda: pending(dr, wf, "pull_extents"), "the pre-sync")
    # Writes after the pre-sync's snapshot: the final sync (replica stopped) has them to move.
    rewrite_fraction(dr.b, replica_id, "disk0", 0.05, seed=62)
    served = dr.disk(dr.b, "web-replica")

    async def in_final_sync() -> bool:
        return dr.power(dr.b, "web-replica") == "STOPPED" and await pending(dr, wf, "pull_extents")
    await until(in_final_sync, "the final sync with the replica stopped", polls=1200)
    await handle.cancel()  # the operator cancels it: the failback fails in its final sync
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    obj = await replica(dr)
    assert (obj.state, obj.owner) == ("FAILOVER", None)  # the record says the truth
    assert dr.power(dr.b, "web-replica") == "RUNNING"  # the replica serves again
    assert dr.power(dr.a, "web") == "STOPPED"  # never two running copies
    assert {s.id for s in dr.b.list_snapshots(replica_id)} == snapshots_before  # failback's snapshots dropped
    dr.same(dr.b, "web-replica", served, "replica after the failed failback")

    dr.catalog.put_service(ReplicationService(name="b", site="b"))
    fb = await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert fb.state == "READY"
    dr.same(dr.a, "web", served, "original after the failback that followed")
    assert src_id == dr.a.find_vm("web").id


async def test_failback_refuses_a_running_original(dr: DR) -> None:
    make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                             source_shutdown=ShutdownMode.POWEROFF)))
    dr.a.power_on(dr.a.find_vm("web").id)  # someone started the original by hand
    message = await failure(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))
    assert "the original VM ca/web is running" in message, message
    obj = await replica(dr)
    assert (obj.state, obj.owner) == ("FAILOVER", None)
    assert dr.power(dr.b, "web-replica") == "RUNNING"


async def _running(dr: DR, name: str) -> bool:
    return dr.b.find_vm(name) is not None and dr.power(dr.b, name) == "RUNNING"

