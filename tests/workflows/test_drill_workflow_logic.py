"""Workflow-logic tests of FailoverTest, the drill (workflows/drill.py), on the time-skipping
server: the real workflow against activity doubles (tests/workflows/doubles.py) that fail
at each step in turn, held to docs/operations.md: the copy deleted and FAILOVER_TEST ->
READY only if the replica is still FAILOVER_TEST, nothing else, the error. They add to
tests/e2e/test_replication.py, test_dr_races.py and test_drill_timer.py."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from models.ids import drill_id
from models.replication import ReplicaState
from models.requests import FailoverTestRequest
from tests.workflows.doubles import (
    World,
    assert_cancelled,
    assert_failed,
    execute,
    fail,
    runbook_until,
    world,
)
from workflows import FailoverTestWorkflow

READY, FAILOVER_TEST = ReplicaState.READY, ReplicaState.FAILOVER_TEST

RUNBOOK = [
    "get_replica",
    "find_replica_point latest",
    "change_replica ->FAILOVER_TEST",
    "b:clone_vm_at replica.p2 -> web-replica-test",
    "b:set_power copy on",
    "b:guest_signs copy",  # no guest to ask in this world: the disks are compared
    "b:power_state copy",
    "b:disk_digest copy",
    "b:disk_digest replica@replica.p2",
    "record_job RUNNING",
    # ... the drill runs until cleanup is asked for or its time is up (skipped here)
    "b:delete_vm copy",
    "change_replica ->READY",
    "record_job TESTED",
]
CLEANUP = ["b:delete_vm copy", "change_replica ->READY"]


def drill(w: World) -> tuple[object, ...]:
    return (FailoverTestWorkflow.run, FailoverTestRequest(plan=w.plan, vm="web", cleanup_after_s=3600),
            drill_id(w.plan, "web"))


async def test_the_runbook_in_order(client: Client) -> None:
    w = world()
    assert await execute(client, w, *drill(w)) is None
    assert w.trace() == RUNBOOK
    assert (w.obj.state, w.obj.owner) == (READY, None) and "copy" not in w.power


@pytest.mark.parametrize(("step", "undo"), [
    pytest.param("b:clone_vm_at replica.p2 -> web-replica-test", ["change_replica ->READY"], id="making the copy"),
    pytest.param("b:set_power copy on", CLEANUP, id="starting the copy"),
    pytest.param("b:guest_signs copy", CLEANUP, id="asking its guest"),
    pytest.param("b:power_state copy", CLEANUP, id="checking its power"),
    pytest.param("b:disk_digest copy", CLEANUP, id="checking its disks"),
    pytest.param("record_job RUNNING", CLEANUP, id="recording the job"),
])
async def test_a_failure_cleans_up_and_ends_the_drill(client: Client, step: str, undo: list[str]) -> None:
    w = world()
    w.on(step, fail())
    assert_failed(await execute(client, w, *drill(w)), "DriverError")
    assert w.trace() == runbook_until(RUNBOOK, step) + undo
    assert (w.obj.state, w.obj.owner) == (READY, None) and "copy" not in w.power


async def test_cancelled_while_it_runs_cleans_up(client: Client) -> None:
    w = world()
    assert_cancelled(await execute(client, w, *drill(w), cancel_at="record_job RUNNING"))
    assert w.trace() == runbook_until(RUNBOOK, "record_job RUNNING") + CLEANUP
    assert (w.obj.state, w.obj.owner) == (READY, None) and "copy" not in w.power


async def test_a_failover_during_the_drill_stays_a_failover(client: Client) -> None:
    """The cleanup's FAILOVER_TEST -> READY is refused (StateConflict); the drill reads the
    state it leaves and still ends tested."""
    w = world()
    failover = f"dr/{w.plan}/web"

    def failed_over(_: object) -> None:
        w.obj = w.obj.model_copy(update={"state": ReplicaState.FAILOVER, "owner": failover})
    w.on("b:delete_vm copy", failed_over)
    assert await execute(client, w, *drill(w)) is None
    assert w.trace() == [*RUNBOOK[:-1], "get_replica", "record_job TESTED"]
    assert (w.obj.state, w.obj.owner) == (ReplicaState.FAILOVER, failover)


@pytest.mark.parametrize(("state", "taken", "kind", "trace"), [
    pytest.param(ReplicaState.FAILOVER, False, "InvalidState", RUNBOOK[:1], id="not READY"),
    pytest.param(READY, True, "StateConflict", RUNBOOK[:3], id="a failover took it meanwhile"),
])
async def test_a_drill_is_refused_unless_the_replica_is_ready(client: Client, state: ReplicaState,
                                                              taken: bool, kind: str, trace: list[str]) -> None:
    w = world(state)
    if taken:
        w.on("change_replica ->FAILOVER_TEST", w.taken_by(f"dr/{w.plan}/web", ReplicaState.FAILOVER))
    assert_failed(await execute(client, w, *drill(w)), kind)
    assert w.trace() == trace and "copy" not in w.power


async def test_a_copy_that_cannot_be_deleted_keeps_the_drill(client: Client) -> None:
    """The copy still runs on the isolated network: the replica stays FAILOVER_TEST (another
    drill is refused; replication and a real failover still go on from it)."""
    w = world()
    w.on("b:delete_vm copy", fail())
    assert_failed(await execute(client, w, *drill(w)), "DriverError")
    assert w.trace() == runbook_until(RUNBOOK, "b:delete_vm copy")
    assert (w.obj.state, w.obj.owner) == (FAILOVER_TEST, None)
