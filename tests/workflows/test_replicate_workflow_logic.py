"""Workflow-logic tests of Replicate (workflows/replication.py) on the time-skipping server:
the real workflow against activity doubles (tests/workflows/doubles.py) that fail at each
step in turn, held to the Replicate table of docs/operations.md: which compensation ran,
in which order and nothing else, the state and claim left, the base pair, the error. The
final sync under a failover's claim is in test_failover_workflow_logic.py. They add to
tests/e2e/test_replication.py."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from models.ids import replicate_id
from models.replication import ReplicaState
from models.replication_jobs import ReplicateInput
from tests.workflows.doubles import (
    Action,
    World,
    assert_cancelled,
    assert_failed,
    execute,
    fail,
    hang,
    runbook_until,
    world,
)
from workflows import ReplicateWorkflow

READY, NOT_READY, FAILOVER_TEST = ReplicaState.READY, ReplicaState.NOT_READY, ReplicaState.FAILOVER_TEST

RUNBOOK = [
    "get_replica",
    "change_replica take ->REPLICATING",
    "a:find_vm web",
    "a:create_snapshot source",
    "b:ensure_replica",
    "b:pull_extents source.s1 -> replica",
    "b:create_snapshot replica",
    "record_replica_point p3",
    "change_replica release ->READY",  # with the new base pair
    "a:drop_snapshot source.base",
    "b:replica_retention",
]
BACK = ["change_replica release ->READY"]  # the previous state, the base pair untouched
DROPPED_BACK = ["a:drop_snapshot source.s1", *BACK]


def replicate(w: World) -> tuple[object, ...]:
    return ReplicateWorkflow.run, ReplicateInput(spec=w.spec, vm="web", point_id="p3"), replicate_id(w.plan, "web")


async def test_the_runbook_in_order(client: Client) -> None:
    w = world()
    assert await execute(client, w, *replicate(w)) is None
    assert w.trace() == RUNBOOK
    assert (w.obj.state, w.obj.owner, w.obj.source_snapshot, w.obj.replica_point) == (READY, None, "source.s1", "p3")
    assert w.snapshots["source"] == ["source.s1"] and w.args(RUNBOOK[5])[0].remote_base == "source.base"


@pytest.mark.parametrize(("step", "action", "after", "undo", "left_snapshots"), [
    pytest.param("a:find_vm web", fail(), False, BACK, [], id="finding the source"),
    pytest.param("a:create_snapshot source", fail(), False, BACK, [], id="source snapshot"),
    pytest.param("b:ensure_replica", fail(), False, DROPPED_BACK, [], id="ensuring the replica VM"),
    pytest.param("b:pull_extents source.s1 -> replica", fail("TransportUnreachable", retryable=True), False,
                 DROPPED_BACK, [], id="pulling (retried first)"),
    pytest.param("b:create_snapshot replica", fail(), False, DROPPED_BACK, [], id="replica snapshot"),
    # The replica snapshot (and maybe its row) stays for the next run's retention.
    pytest.param("record_replica_point p3", fail(), True, DROPPED_BACK, ["replica.s1"], id="recording the point"),
    pytest.param("b:pull_extents source.s1 -> replica", hang, False, DROPPED_BACK, [], id="cancelled while pulling"),
])
async def test_a_failure_before_the_point_lets_go_to_the_previous_state(
        client: Client, step: str, action: Action, after: bool, undo: list[str], left_snapshots: list[str]) -> None:
    w = world()
    w.on(step, action, after=after)
    failed = await execute(client, w, *replicate(w), cancel_at=step if action is hang else None)
    if action is hang:
        assert_cancelled(failed)
    else:
        transient = step.startswith("b:pull") and action is not hang
        assert_failed(failed, "TransportUnreachable" if transient else "DriverError")
        assert w.attempts(step) == (4 if transient else 1)
    assert w.trace() == runbook_until(RUNBOOK, step) + undo
    # The next run pulls from the same base again.
    assert (w.obj.state, w.obj.owner, w.obj.source_snapshot, w.obj.replica_point) == (READY, None, "source.base", "p2")
    assert w.snapshots["source"] == ["source.base"]
    assert w.snapshots["replica"] == ["replica.p1", "replica.p2", *left_snapshots]


@pytest.mark.parametrize("step", ["a:drop_snapshot source.base", "b:replica_retention"])
async def test_a_failure_after_the_point_leaves_old_snapshots_to_the_next_run(client: Client, step: str) -> None:
    """The point is in and the base pair moved on before these steps; nothing is undone."""
    w = world()
    w.on(step, fail())
    assert_failed(await execute(client, w, *replicate(w)), "DriverError")
    assert w.trace() == runbook_until(RUNBOOK, step)
    assert (w.obj.state, w.obj.owner, w.obj.source_snapshot, w.obj.replica_point) == (READY, None, "source.s1", "p3")


@pytest.mark.parametrize(("state", "owner", "claim"), [
    pytest.param(READY, "dr/x/web", "change_replica take ->REPLICATING", id="held by a failover"),
    pytest.param(ReplicaState.FAILOVER, None, "change_replica take", id="failed over"),
])
async def test_a_replica_another_operation_has_is_refused(client: Client, state: ReplicaState,
                                                          owner: str | None, claim: str) -> None:
    """Refused at the claim (StateConflict, not retried); nothing else runs or changes."""
    w = world()
    w.obj = w.obj.model_copy(update={"state": state, "owner": owner})
    before = w.obj
    assert_failed(await execute(client, w, *replicate(w)), "StateConflict")
    assert w.trace() == ["get_replica", claim] and w.attempts(claim) == 1 and w.obj == before


async def test_a_first_run_that_fails_goes_back_to_not_ready(client: Client) -> None:
    w = world(NOT_READY)
    w.obj = w.obj.model_copy(update={"replica_point": None, "source_snapshot": None})
    w.on("b:pull_extents source.s1 -> replica", fail())
    assert_failed(await execute(client, w, *replicate(w)), "DriverError")
    assert w.trace()[-2:] == ["a:drop_snapshot source.s1", "change_replica release ->NOT_READY"]
    assert w.args("b:pull_extents source.s1 -> replica")[0].remote_base is None  # an initial seed
    assert (w.obj.state, w.obj.owner) == (NOT_READY, None)


async def test_a_run_beside_a_drill_keeps_the_drill_state(client: Client) -> None:
    """A drill's FAILOVER_TEST stays: claimed without a state change, released without one."""
    w = world(FAILOVER_TEST)
    w.on("b:pull_extents source.s1 -> replica", fail())
    assert_failed(await execute(client, w, *replicate(w)), "DriverError")
    assert w.trace() == ["get_replica", "change_replica take", *RUNBOOK[2:6], "a:drop_snapshot source.s1",
                         "change_replica release"]
    assert (w.obj.state, w.obj.owner) == (FAILOVER_TEST, None)
