"""Workflow-logic tests of Failover and UndoFailover (workflows/failover.py) on the
time-skipping server: the real workflows against activity doubles (tests/workflows/doubles.py)
that fail at each step of the runbook in turn, held to docs/operations.md: which
compensation ran, in which order and nothing else, the state and claim left, the error.
They reach failure paths the end-to-end tests (tests/e2e/test_dr_races.py,
test_replication.py) cannot arrange, and add to them."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ChildWorkflowError
from temporalio.testing import WorkflowEnvironment

from models.ids import dr_id
from models.inventory import ShutdownMode
from models.queues import WORKFLOW_TASK_QUEUE
from models.replication import ReplicaState
from models.requests import FailoverRequest, UndoFailoverRequest
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
    pending,
    runbook_until,
    site_worker,
    world,
)
from workflows import FailoverWorkflow, UndoFailoverWorkflow

READY, FAILOVER = ReplicaState.READY, ReplicaState.FAILOVER

# A planned failover to the older point p1: fence the source, roll the replica back, switch, start it.
RUNBOOK = [
    "get_replica",
    "find_replica_point p1",
    "b:power_state replica",  # the target answers and has the replica, before anything is changed
    "change_replica take",
    "record_job RUNNING",
    "a:power_state source",  # fence: is it running (then compensation restarts it)?
    "a:shutdown_vm source",
    "a:power_state source",  # the source is not running
    "b:set_power replica off",
    "b:rollback_vm replica.p1",
    "change_replica hold ->FAILOVER",
    "a:power_state source",  # again, right before the replica starts
    "b:set_power replica on",
    "change_replica release",
    "record_job SUCCESS",
]
# The final sync (point `now`): a Replicate child under the failover's claim.
SYNC = [
    "get_replica",
    "change_replica hold",
    "a:find_vm web",
    "a:create_snapshot source",
    "b:ensure_replica",
    "b:pull_extents source.s1 -> replica",
    "b:create_snapshot replica",
    "record_replica_point web.fo*",
    "change_replica hold ->READY",
    "a:drop_snapshot source.base",
    "b:replica_retention",
]
NOW_RUNBOOK = [*RUNBOOK[:1], *RUNBOOK[2:7], *SYNC, "find_replica_point web.fo*", *RUNBOOK[7:9],
               "b:rollback_vm replica.s1", *RUNBOOK[10:]]

# Compensation, piece by piece, as docs/operations.md names it.
BACK_TO_NEWEST = ["b:set_power replica off", "find_replica_point latest", "b:rollback_vm replica.p2"]
RESTART_SOURCE = ["b:power_state replica", "a:set_power source on"]  # read right before the power-on
LET_GO = ["change_replica release", "record_job FAILED"]  # the replica's state as it is
LET_GO_READY = ["change_replica release ->READY", "record_job FAILED"]  # after FAILOVER was set
SYNC_SNAPSHOT_DROPPED = ["a:drop_snapshot source.s1", "change_replica hold ->READY"]


class Left(NamedTuple):
    """What a failed failover leaves: the replica's state, both VMs' power, the replica's disk."""

    state: ReplicaState
    source: str
    replica: str
    disk: str


UNTOUCHED = Left(READY, RUNNING, STOPPED, "replica.p2")
SERVING = Left(FAILOVER, STOPPED, RUNNING, "replica.p1")


def failover(w: World, point: str = "p1", shutdown: ShutdownMode = ShutdownMode.SHUTDOWN) -> tuple[object, ...]:
    return (FailoverWorkflow.run, FailoverRequest(plan=w.plan, vm="web", point=point, source_shutdown=shutdown),
            dr_id(w.plan, "web"))


def source_started(w: World) -> Action:
    """Somebody starts the source again behind abdr's back."""
    def action(call: Call) -> None:
        w.power["source"] = RUNNING
    return action


def check_left(w: World, left: Left, owner: str | None = None) -> None:
    assert (w.obj.state, w.power["source"], w.power["replica"], w.disk["replica"]) == tuple(left)
    assert w.obj.owner == owner
    assert w.violations == [], "two running copies"


@pytest.mark.parametrize(("step", "n", "action", "after", "undo", "kind", "left"), [
    pytest.param("a:power_state source", 1, fail(), False, LET_GO, "SourceUnknown", UNTOUCHED,
                 id="fence: the source site answers with an error"),
    pytest.param("a:shutdown_vm source", 1, fail("SourceNotStopped"), False, LET_GO, "SourceNotStopped", UNTOUCHED,
                 id="fence: the source does not stop"),
    pytest.param("a:power_state source", 2, None, False, RESTART_SOURCE + LET_GO, "SourceRunning", UNTOUCHED,
                 id="check: the source was started again"),
    pytest.param("b:set_power replica off", 1, fail(), False, RESTART_SOURCE + LET_GO, "DriverError",
                 UNTOUCHED, id="stopping the replica"),
    pytest.param("b:rollback_vm replica.p1", 1, fail(), True, BACK_TO_NEWEST + RESTART_SOURCE + LET_GO,
                 "DriverError", UNTOUCHED, id="rollback: rolled back to p1, then failed"),
    pytest.param("change_replica hold ->FAILOVER", 1, fail("CatalogError"), False,
                 BACK_TO_NEWEST + RESTART_SOURCE + LET_GO, "CatalogError", UNTOUCHED, id="switching to FAILOVER"),
    pytest.param("a:power_state source", 3, None, False, BACK_TO_NEWEST + RESTART_SOURCE + LET_GO_READY,
                 "SourceRunning", UNTOUCHED, id="check before power-on: the source was started again"),
    pytest.param("b:set_power replica on", 1, fail(), True, BACK_TO_NEWEST + RESTART_SOURCE + LET_GO_READY,
                 "DriverError", UNTOUCHED, id="power-on: the replica started, then the call failed"),
    # After the switch nothing is undone: the replica serves. A failed release leaves the claim
    # with dr/<plan>/<vm>, the id every later DR operation on the VM runs under (so it can take it).
    pytest.param("change_replica release", 1, fail("CatalogError"), False, [], "CatalogError", SERVING,
                 id="release after the replica started"),
    pytest.param("record_job SUCCESS", 1, fail("CatalogError"), False, [], "CatalogError", SERVING,
                 id="the job record after the failover was done"),
])
async def test_a_failure_at_each_step_undoes_exactly_what_was_done(
        client: Client, step: str, n: int, action: Action | None, after: bool,
        undo: list[str], kind: str, left: Left) -> None:
    w = world()
    w.on(step, action or source_started(w), occurrence=n, after=after)
    failed = await execute(client, w, *failover(w))
    assert_failed(failed, kind)
    assert w.trace() == runbook_until(RUNBOOK, step, n) + undo
    owner = dr_id(w.plan, "web") if step == "change_replica release" else None
    check_left(w, left, owner)
    if left.state == READY:
        assert w.obj.failover_snapshot is None and w.jobs == ["RUNNING", "FAILED"]


async def test_the_runbook_in_order(client: Client) -> None:
    w = world()
    assert await execute(client, w, *failover(w)) is None
    assert w.trace() == RUNBOOK
    check_left(w, SERVING)
    assert w.obj.failover_snapshot == "replica.p1" and w.unread_power_ons == []
    # Its catalog calls were local activities (markers), its site calls normal ones (scheduled).
    scheduled, markers = set(), 0
    async for e in client.get_workflow_handle(failover(w)[2]).fetch_history_events():
        if e.HasField("activity_task_scheduled_event_attributes"):
            scheduled.add(e.activity_task_scheduled_event_attributes.activity_type.name)
        markers += e.HasField("marker_recorded_event_attributes")
    assert scheduled == {"power_state", "shutdown_vm", "set_power", "rollback_vm"}, scheduled
    assert markers >= sum(1 for c in RUNBOOK if ":" not in c.split()[0])  # one per catalog call (and patches)


BEFORE_THE_POINT = ["source.base"]  # the sync's source snapshot dropped, the base pair as it was


@pytest.mark.parametrize(("step", "child_undo", "base", "source_snapshots"), [
    pytest.param("a:find_vm web", ["change_replica hold ->READY"], "source.base", BEFORE_THE_POINT,
                 id="finding the source"),
    pytest.param("a:create_snapshot source", ["change_replica hold ->READY"], "source.base", BEFORE_THE_POINT,
                 id="source snapshot"),
    pytest.param("b:ensure_replica", SYNC_SNAPSHOT_DROPPED, "source.base", BEFORE_THE_POINT,
                 id="ensuring the replica VM"),
    pytest.param("b:pull_extents source.s1 -> replica", SYNC_SNAPSHOT_DROPPED, "source.base", BEFORE_THE_POINT,
                 id="pulling"),
    pytest.param("b:create_snapshot replica", SYNC_SNAPSHOT_DROPPED, "source.base", BEFORE_THE_POINT,
                 id="replica snapshot"),
    pytest.param("record_replica_point web.fo*", SYNC_SNAPSHOT_DROPPED, "source.base", BEFORE_THE_POINT,
                 id="recording the point"),
    # The sync's point is in and the base pair moved on; the failover still stops there.
    pytest.param("a:drop_snapshot source.base", [], "source.s1", ["source.base", "source.s1"],
                 id="dropping the old base"),
    pytest.param("b:replica_retention", [], "source.s1", ["source.s1"], id="retention"),
])
async def test_a_failure_in_the_final_sync_powers_the_source_on_again(
        client: Client, step: str, child_undo: list[str], base: str,
        source_snapshots: list[str]) -> None:
    """The final sync undoes itself as Replicate does (under the failover's claim, which it
    keeps), then the failover restarts the source it stopped and lets go; the replica was
    never touched. A failed pull is retried first (a transient error)."""
    w = world()
    transient = step.startswith("b:pull_extents")
    w.on(step, fail("TransportUnreachable", retryable=True) if transient else fail())
    failed = await execute(client, w, *failover(w, "now"))
    assert failed is not None and isinstance(failed.cause, ChildWorkflowError)
    assert_failed(failed, "TransportUnreachable" if transient else "DriverError")
    assert w.attempts(step) == (4 if transient else 1)  # the site's retry policy: 3 retries
    assert w.trace() == runbook_until(NOW_RUNBOOK, step) + child_undo + RESTART_SOURCE + LET_GO
    # Pulled extents stay on the replica's live disk (docs: "partly written, its points untouched").
    pulled = NOW_RUNBOOK.index(step) > NOW_RUNBOOK.index("b:pull_extents source.s1 -> replica")
    check_left(w, UNTOUCHED._replace(disk="source.s1" if pulled else "replica.p2"))
    assert w.obj.source_snapshot == base and w.snapshots["source"] == source_snapshots


async def test_a_final_sync_then_the_runbook(client: Client) -> None:
    w = world()
    assert await execute(client, w, *failover(w, "now")) is None
    assert w.trace() == NOW_RUNBOOK
    check_left(w, SERVING._replace(disk="replica.s1"))
    assert w.obj.source_snapshot == "source.s1" and w.obj.failover_snapshot == "replica.s1"


@pytest.mark.parametrize(("point", "hold", "undo"), [
    pytest.param("now", "b:pull_extents source.s1 -> replica", SYNC_SNAPSHOT_DROPPED + RESTART_SOURCE + LET_GO,
                 id="during the final sync"),
    pytest.param("p1", "b:rollback_vm replica.p1", BACK_TO_NEWEST + RESTART_SOURCE + LET_GO, id="during rollback"),
])
async def test_cancelled_mid_way_undoes_what_was_done(client: Client, point: str, hold: str,
                                                      undo: list[str]) -> None:
    w = world()
    w.on(hold, hang)
    failed = await execute(client, w, *failover(w, point), cancel_at=hold)
    assert_cancelled(failed)
    assert w.trace() == runbook_until(NOW_RUNBOOK if point == "now" else RUNBOOK, hold) + undo
    check_left(w, UNTOUCHED)


async def test_a_claim_lost_to_another_operation_is_refused_and_changes_nothing(
        client: Client) -> None:
    """A replication run takes the replica between the failover's read and its claim: the
    claim is refused (StateConflict, not retried) and nothing else runs."""
    w = world()
    other = f"replication/{w.plan}/web"
    w.on("change_replica take", w.taken_by(other, ReplicaState.REPLICATING))
    assert_failed(await execute(client, w, *failover(w)), "StateConflict")
    assert w.trace() == runbook_until(RUNBOOK, "change_replica take") and w.attempts("change_replica take") == 1
    assert (w.obj.state, w.obj.owner, w.obj.version) == (ReplicaState.REPLICATING, other, 8)
    assert w.power == {"source": RUNNING, "replica": STOPPED} and w.jobs == []


async def test_a_lost_compare_and_set_at_the_claim_is_retried(client: Client) -> None:
    w = world()
    w.on("change_replica take", fail("ConcurrentChange", retryable=True, attempts=1))
    assert await execute(client, w, *failover(w)) is None
    assert w.trace() == RUNBOOK and w.attempts("change_replica take") == 2
    check_left(w, SERVING)


@pytest.mark.parametrize(("change", "kind", "trace"), [
    pytest.param({"owner": "replication/x/web"}, "StateConflict", ["get_replica"], id="claimed by a replication"),
    pytest.param({"state": ReplicaState.NOT_READY}, "InvalidState", ["get_replica"], id="never replicated"),
    pytest.param({}, "InvalidRequest", ["get_replica", "find_replica_point nope"], id="an unknown point"),
])
async def test_a_refusal_before_the_claim_changes_nothing(client: Client, change: dict,
                                                          kind: str, trace: list[str]) -> None:
    w = world()
    w.obj = w.obj.model_copy(update=change)
    before = w.obj
    assert_failed(await execute(client, w, *failover(w, "nope" if not change else "p1")), kind)
    assert w.trace() == trace and w.obj == before and w.jobs == []


async def test_a_failure_recording_the_job_lets_the_claim_go(client: Client) -> None:
    w = world()
    w.on("record_job RUNNING", fail("CatalogError"))
    assert_failed(await execute(client, w, *failover(w)), "CatalogError")
    assert w.obj.owner is None


async def test_a_source_stopped_after_an_unanswered_probe_is_powered_on_again(
        client: Client, skipping_env: WorkflowEnvironment) -> None:
    """The source's site (`x` here) does not answer the fence's first probe (no worker yet),
    then comes back and stops the source; the final sync then fails. The test server skips
    no time while an activity waits for a worker: the probe's 20 s pass in real time."""
    w = world(source_site="x")
    w.on("b:pull_extents source.s1 -> replica", fail())
    run, req, wf_id = failover(w, "now")
    handle = await client.start_workflow(run, req, id=wf_id, task_queue=WORKFLOW_TASK_QUEUE)  # type: ignore[call-overload]
    await pending(handle, "shutdown_vm")  # the probe timed out: "the site did not answer"
    async with site_worker(skipping_env, "x"):
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert w.trace()[3:5] == ["record_job RUNNING", "x:shutdown_vm source"]  # the probe was never answered
    assert w.power["source"] == RUNNING


async def test_compensation_reads_the_replica_before_it_restarts_the_source(client: Client) -> None:
    w = world()
    w.power["replica"] = RUNNING  # started by hand, and it will not stop
    w.on("b:set_power replica off", fail())
    assert_failed(await execute(client, w, *failover(w)), "DriverError")
    assert w.violations == [] and w.unread_power_ons == []


# -- undo failover -----------------------------------------------------------------------

UNDO_RUNBOOK = [
    "get_replica",
    "find_replica_point p2",  # the newest replicated point, the base replication goes on from
    "change_replica take",
    "b:set_power replica off",
    "b:rollback_vm replica.p2",
    "change_replica release ->READY",
    "record_job UNDONE",
]


def undo(w: World) -> tuple[object, ...]:
    return UndoFailoverWorkflow.run, UndoFailoverRequest(plan=w.plan, vm="web"), dr_id(w.plan, "web")


async def test_undo_failover_returns_to_the_newest_point(client: Client) -> None:
    w = world(FAILOVER)
    assert await execute(client, w, *undo(w)) is None
    assert w.trace() == UNDO_RUNBOOK
    assert (w.obj.state, w.obj.owner, w.obj.failover_snapshot) == (READY, None, None)
    assert w.power == {"source": STOPPED, "replica": STOPPED} and w.disk["replica"] == "replica.p2"


@pytest.mark.parametrize(("step", "action"), [
    pytest.param("b:set_power replica off", fail(), id="stopping the replica"),
    pytest.param("b:rollback_vm replica.p2", fail(), id="rollback"),
    pytest.param("b:rollback_vm replica.p2", hang, id="cancelled during rollback"),
])
async def test_a_failed_undo_lets_go_with_the_replica_left_failover(client: Client, step: str,
                                                                    action: Action) -> None:
    """docs/operations.md: 'a failure releases the claim with the replica left FAILOVER
    (stopped) and says so'."""
    w = world(FAILOVER)
    w.on(step, action)
    failed = await execute(client, w, *undo(w), cancel_at=step if action is hang else None)
    if action is hang:
        assert_cancelled(failed)
    else:
        assert_failed(failed, "DriverError")
    assert w.trace() == runbook_until(UNDO_RUNBOOK, step) + ["change_replica release"]
    assert (w.obj.state, w.obj.owner, w.obj.failover_snapshot) == (FAILOVER, None, "replica.p1")
    assert "replica left stopped" in w.reasons[-1]


async def test_undo_refuses_a_claimed_replica(client: Client) -> None:
    w = world(FAILOVER)
    w.on("change_replica take", w.taken_by(f"other/{w.plan}/web"))
    assert_failed(await execute(client, w, *undo(w)), "StateConflict")
    assert w.trace() == runbook_until(UNDO_RUNBOOK, "change_replica take")
    assert w.power["replica"] == RUNNING
