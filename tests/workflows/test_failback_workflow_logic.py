"""Workflow-logic tests of Failback and PermanentFailover (workflows/failback.py) on the
time-skipping server: the real workflows against activity doubles (tests/workflows/doubles.py)
that fail at each step of the runbook in turn, held to docs/operations.md: which
compensation ran, in which order and nothing else, the state and claim left, the error.
They add to the end-to-end tests (tests/e2e/test_dr_races.py, test_replication.py)."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from models.ids import dr_id
from models.replication import ReplicaState
from models.requests import FailbackRequest, PermanentFailoverRequest
from tests.workflows.doubles import (
    RUNNING,
    STOPPED,
    Action,
    Call,
    World,
    assert_cancelled,
    assert_failed,
    execute,
    fail,
    hang,
    runbook_until,
    world,
)
from workflows import FailbackWorkflow, PermanentFailoverWorkflow

READY, FAILOVER, FAILBACK = ReplicaState.READY, ReplicaState.FAILOVER, ReplicaState.FAILBACK

# The replica serves since a failover to p1; the original (`source`) is stopped.
RUNBOOK = [
    "get_replica",
    "a:power_state source",  # the original must be known stopped
    "change_replica take ->FAILBACK",
    "record_job RUNNING",
    "b:create_snapshot replica",  # s1
    "a:pull_extents replica.s1 -> source",  # pre-sync, the replica still serving
    "b:shutdown_vm replica",
    "b:create_snapshot replica",  # s2
    "a:pull_extents replica.s2 -> source",  # final sync
    "a:create_snapshot source",  # the new base
    "record_replica_point web.fb*",
    "change_replica hold ->READY",
    "b:drop_snapshot replica.s1",
    "a:drop_snapshot source.base",
    "b:power_state replica",  # right before the original starts
    "a:set_power source on",
    "change_replica release",
    "record_job SUCCESS",
]
REPLICA_ON = ["a:power_state source", "b:set_power replica on"]  # read right before the power-on
S1_DROPPED = ["b:drop_snapshot replica.s1"]
S2_DROPPED = ["b:drop_snapshot replica.s2"]
SERVES_AGAIN = ["change_replica release ->FAILOVER", "record_job FAILED"]


def failback(w: World) -> tuple[object, ...]:
    return FailbackWorkflow.run, FailbackRequest(plan=w.plan, vm="web"), dr_id(w.plan, "web")


def check_serves_again(w: World) -> None:
    """A failed failback leaves the replica serving, FAILOVER, unclaimed, its snapshots as before."""
    assert (w.obj.state, w.obj.owner, w.obj.failover_snapshot) == (FAILOVER, None, "replica.p1")
    assert w.power == {"source": STOPPED, "replica": RUNNING}, "the original never starts"
    assert w.snapshots["replica"] == ["replica.p1", "replica.p2"] and w.violations == []


async def test_the_runbook_in_order(client: Client) -> None:
    w = world(FAILOVER)
    assert await execute(client, w, *failback(w)) is None
    assert w.trace() == RUNBOOK
    assert (w.obj.state, w.obj.owner, w.obj.failover_snapshot) == (READY, None, None)
    assert (w.obj.source_snapshot, w.obj.replica_point.startswith("web.fb")) == ("source.s1", True)
    assert w.power == {"source": RUNNING, "replica": STOPPED} and w.disk["source"] == "replica.s2"
    assert w.snapshots == {"source": ["source.s1"], "replica": ["replica.p1", "replica.p2", "replica.s2"],
                           "web": ["web.b1"]}
    assert w.violations == [] and w.unread_power_ons == []
    pre, final = w.args("a:pull_extents replica.s1 -> source") + w.args("a:pull_extents replica.s2 -> source")
    # The pre-sync moves what either side changed since the failover's point; the final sync what changed since s1.
    assert (pre.remote_base, pre.local_base, final.remote_base) == ("replica.p1", "source.base", "replica.s1")


TRANSIENT = "TransportUnreachable"


@pytest.mark.parametrize(("step", "n", "action", "undo"), [
    pytest.param("b:create_snapshot replica", 1, fail(), SERVES_AGAIN, id="s1"),
    pytest.param("a:pull_extents replica.s1 -> source", 1, fail(TRANSIENT, retryable=True),
                 S1_DROPPED + SERVES_AGAIN, id="pre-sync (retried first)"),
    pytest.param("b:shutdown_vm replica", 1, fail(), REPLICA_ON + S1_DROPPED + SERVES_AGAIN, id="stopping the replica"),
    pytest.param("b:create_snapshot replica", 2, fail(), REPLICA_ON + S1_DROPPED + SERVES_AGAIN, id="s2"),
    pytest.param("a:pull_extents replica.s2 -> source", 1, fail(), REPLICA_ON + S1_DROPPED + S2_DROPPED + SERVES_AGAIN,
                 id="final sync"),
    pytest.param("a:pull_extents replica.s1 -> source", 1, hang, S1_DROPPED + SERVES_AGAIN, id="cancelled in pre-sync"),
    pytest.param("a:pull_extents replica.s2 -> source", 1, hang, REPLICA_ON + S1_DROPPED + S2_DROPPED + SERVES_AGAIN,
                 id="cancelled in the final sync"),
])
async def test_a_failure_before_the_switch_leaves_the_replica_serving(
        client: Client, request: pytest.FixtureRequest, step: str, n: int, action: Action, undo: list[str]) -> None:
    """docs/operations.md: s1 dropped; the replica powered on again if failback stopped it;
    s1, s2 dropped; FAILOVER again. The original, never started, is re-synced next time."""
    w = world(FAILOVER)
    w.on(step, action, occurrence=n)
    failed = await execute(client, w, *failback(w), cancel_at=step if action is hang else None)
    if action is hang:
        assert_cancelled(failed)
    else:
        transient = "retried" in request.node.callspec.id
        assert_failed(failed, TRANSIENT if transient else "DriverError")
        assert w.attempts(step, n) == (4 if transient else 1)
    assert w.trace() == runbook_until(RUNBOOK, step, n) + undo
    check_serves_again(w)


@pytest.mark.parametrize(("power", "action", "kind"), [
    pytest.param(RUNNING, None, "SourceRunning", id="the original runs"),
    pytest.param(STOPPED, fail(), "SourceUnknown", id="its site answers with an error"),
])
async def test_failback_refuses_unless_the_original_is_known_stopped(client: Client, power: str,
                                                                     action: Action | None, kind: str) -> None:
    w = world(FAILOVER)
    w.power["source"] = power
    if action is not None:
        w.on("a:power_state source", action)
    before = w.obj
    assert_failed(await execute(client, w, *failback(w)), kind)
    assert w.trace() == ["get_replica", "a:power_state source"] and w.obj == before and w.jobs == []


async def test_failback_refuses_a_replica_claimed_meanwhile(client: Client) -> None:
    w = world(FAILOVER)
    other = f"other/{w.plan}/web"
    w.on("change_replica take ->FAILBACK", w.taken_by(other))
    assert_failed(await execute(client, w, *failback(w)), "StateConflict")
    assert w.trace() == runbook_until(RUNBOOK, "change_replica take ->FAILBACK")
    assert (w.obj.state, w.obj.owner) == (FAILOVER, other) and w.power["replica"] == RUNNING


async def test_compensation_reads_the_original_before_it_restarts_the_replica(client: Client) -> None:
    w = world(FAILOVER)

    def original_started(call: Call) -> None:
        w.power["source"] = RUNNING
    w.on("b:shutdown_vm replica", original_started)
    w.on("a:pull_extents replica.s2 -> source", fail())
    assert_failed(await execute(client, w, *failback(w)), "DriverError")
    assert w.violations == [] and w.unread_power_ons == []


SERVES_AGAIN_PROBED = ["a:power_state source", "b:set_power replica on"]


@pytest.mark.parametrize(("step", "undo"), [
    pytest.param("a:create_snapshot source", SERVES_AGAIN_PROBED + S1_DROPPED + S2_DROPPED + SERVES_AGAIN,
                 id="the new base"),
    pytest.param("record_replica_point web.fb*", SERVES_AGAIN_PROBED + ["a:drop_snapshot source.s1"] + S1_DROPPED
                 + S2_DROPPED + SERVES_AGAIN, id="the FAILBACK point"),
    pytest.param("change_replica hold ->READY", SERVES_AGAIN_PROBED + ["a:drop_snapshot source.s1"] + S1_DROPPED
                 + SERVES_AGAIN, id="READY: s2 stays, the recorded point names it"),
    pytest.param("a:set_power source on", ["change_replica release", "record_job FAILED"],
                 id="the original's power-on: READY, let go"),
])
async def test_a_failure_after_the_final_sync_is_undone(client: Client, step: str, undo: list[str]) -> None:
    """docs/operations.md: before READY the replica serves again (FAILOVER, the bases as they
    were, so the next failback re-syncs); after READY the claim is let go with READY."""
    w = world(FAILOVER)
    w.on(step, fail())
    assert_failed(await execute(client, w, *failback(w)), "DriverError")
    assert w.trace() == runbook_until(RUNBOOK, step) + undo
    assert w.obj.owner is None and w.violations == [] and w.unread_power_ons == []
    if step == "a:set_power source on":
        assert (w.obj.state, w.power) == (READY, {"source": STOPPED, "replica": STOPPED})
    elif step == "change_replica hold ->READY":  # s2 stays: the recorded FAILBACK point names it
        assert (w.obj.state, w.obj.failover_snapshot, w.power) == (FAILOVER, "replica.p1", {"source": STOPPED,
                                                                                           "replica": RUNNING})
        assert w.snapshots["replica"] == ["replica.p1", "replica.p2", "replica.s2"]
    else:
        check_serves_again(w)


@pytest.mark.parametrize("step", ["b:drop_snapshot replica.s1", "a:drop_snapshot source.base"])
async def test_a_failed_drop_after_the_switch_is_only_a_snapshot_left(client: Client, step: str) -> None:
    w = world(FAILOVER)
    w.on(step, fail())
    assert await execute(client, w, *failback(w)) is None
    assert w.trace() == RUNBOOK
    assert (w.obj.state, w.obj.owner, w.power) == (READY, None, {"source": RUNNING, "replica": STOPPED})


async def test_a_failure_recording_the_job_lets_the_claim_go(client: Client) -> None:
    w = world(FAILOVER)
    w.on("record_job RUNNING", fail("CatalogError"))
    assert_failed(await execute(client, w, *failback(w)), "CatalogError")
    assert (w.obj.state, w.obj.owner) == (FAILOVER, None)


# -- permanent failover ----------------------------------------------------------------

REVERSE = "P-rp-web/web-replica"  # the reverse plan's object: the old replica replicated back
REPROTECT_RUNBOOK = [
    "get_replica",
    "change_replica take",
    "b:create_snapshot replica",  # the seed: the new production VM's changes since failover
    "a:pull_extents replica.s1 -> source",
    "a:create_snapshot source",
    "create_reverse_plan",
    "record_replica_point web-replica.rp*",
    f"change_replica {REVERSE} ->REPLICATING",
    f"change_replica {REVERSE} ->READY",
    "change_replica release ->PERMANENT_FAILOVER",
    "exclude_from_plan",
    "record_job SUCCESS",
]


def permanent(w: World, reprotect: bool = True) -> tuple[object, ...]:
    return (PermanentFailoverWorkflow.run, PermanentFailoverRequest(plan=w.plan, vm="web", reprotect=reprotect),
            dr_id(w.plan, "web"))


@pytest.mark.parametrize(("reprotect", "runbook"), [
    pytest.param(True, REPROTECT_RUNBOOK, id="reprotect"),
    pytest.param(False, [*REPROTECT_RUNBOOK[:2], *REPROTECT_RUNBOOK[-3:]], id="no reprotect"),
])
async def test_permanent_failover_runbook(client: Client, reprotect: bool, runbook: list[str]) -> None:
    w = world(FAILOVER)
    assert await execute(client, w, *permanent(w, reprotect)) is None
    assert w.trace() == runbook and w.excluded == ["web"]
    assert (w.obj.state, w.obj.owner) == (ReplicaState.PERMANENT_FAILOVER, None)
    if reprotect:
        back = w.objects[(f"{w.plan}-rp-web", "web-replica")]
        assert (back.state, back.source_snapshot, back.source_vm_id, back.replica_vm_id) == (
            READY, "replica.s1", "replica", "source")


async def test_a_permanent_failover_leaves_the_plan_however_long_the_catalog_fails(client: Client) -> None:
    """The failover is permanent once released as such: the original's exclusion from the
    plan is retried until it succeeds (here past the catalog's usual five retries), never
    given up with the VM still in the plan."""
    w = world(FAILOVER)
    w.on("exclude_from_plan", fail("OperationalError", retryable=True, attempts=9))  # the database down
    assert await execute(client, w, *permanent(w, reprotect=False)) is None
    assert w.attempts("exclude_from_plan") == 10 and w.excluded == ["web"]
    assert (w.obj.state, w.obj.owner) == (ReplicaState.PERMANENT_FAILOVER, None)
    assert w.trace()[-1] == "record_job SUCCESS"


SEED_DROPPED = ["b:drop_snapshot replica.s1"]
RSNAP_DROPPED = ["a:drop_snapshot source.s1"]


@pytest.mark.parametrize(("step", "undo"), list(zip(REPROTECT_RUNBOOK[2:9], [
    [],  # the seed snapshot itself
    SEED_DROPPED,
    SEED_DROPPED,  # the old original's snapshot
    SEED_DROPPED + RSNAP_DROPPED,  # the reverse plan
    SEED_DROPPED + RSNAP_DROPPED,  # the reverse replica's point
    SEED_DROPPED,  # ->REPLICATING: the recorded point keeps its snapshot
    [f"change_replica {REVERSE} ->NOT_READY"] + SEED_DROPPED,  # ->READY: seed again next time
])))
async def test_a_failed_reprotect_seed_lets_go_still_failover(client: Client, step: str, undo: list[str]) -> None:
    """docs/operations.md: 'a failure of the seed releases the claim, still FAILOVER', having
    dropped the snapshots no recorded point needs and put the reverse object back."""
    w = world(FAILOVER)
    w.on(step, fail())
    assert_failed(await execute(client, w, *permanent(w)), "DriverError")
    assert w.trace() == runbook_until(REPROTECT_RUNBOOK, step) + undo + ["change_replica release"]
    assert (w.obj.state, w.obj.owner) == (FAILOVER, None) and w.excluded == []
    assert w.power == {"source": STOPPED, "replica": RUNNING}


async def test_a_cancelled_reprotect_lets_go_still_failover(client: Client) -> None:
    w = world(FAILOVER)
    step = "a:pull_extents replica.s1 -> source"
    w.on(step, hang)
    assert_cancelled(await execute(client, w, *permanent(w), cancel_at=step))
    assert w.trace() == runbook_until(REPROTECT_RUNBOOK, step) + SEED_DROPPED + ["change_replica release"]
    assert (w.obj.state, w.obj.owner) == (FAILOVER, None)


async def test_a_permanent_failover_retried_after_a_failed_seed_completes(client: Client) -> None:
    w = world(FAILOVER)
    w.on(f"change_replica {REVERSE} ->READY", fail())
    assert_failed(await execute(client, w, *permanent(w)), "DriverError")
    assert await execute(client, w, *permanent(w)) is None


async def test_a_failed_reprotect_seed_drops_its_snapshots(client: Client) -> None:
    w = world(FAILOVER)
    w.on("create_reverse_plan", fail())
    assert_failed(await execute(client, w, *permanent(w)), "DriverError")
    assert w.snapshots["replica"] == ["replica.p1", "replica.p2"] and w.snapshots["source"] == ["source.base"]
