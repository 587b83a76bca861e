"""Workflow-logic tests of VMBackup (workflows/backup.py) and Restore (workflows/restore.py)
on the time-skipping server: the real workflows against activity doubles
(tests/workflows/doubles.py) that fail at each step in turn. docs/operations.md covers the
DR operations only; these hold the workflows to their own docstrings: a backup that fails
or is stopped before its point exists leaves nothing behind that looks like a backup, and
a restore stops where it failed. They add to tests/e2e/test_backup_restore.py,
test_durability.py and test_restore_durability.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.client import Client

from models.ids import vm_backup_id
from models.jobs import ResolvedVM, RestoreInput, VMBackupInput
from models.plans import VMRef
from models.requests import RestoreMode, RestoreRequest
from models.restore_points import PointCreation
from models.retention import Retention, RetentionKind
from tests.workflows.doubles import (
    RUNNING,
    STOPPED,
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
from workflows import RestoreWorkflow, VMBackupWorkflow

BACKUP = [
    "a:prepare_backup web",
    "a:create_snapshot web",
    "a:transfer_backup web.s1 -> bk1",
    # Record the point, release the old base (the new snapshot is the next backup's base),
    # apply retention: one site call (backup-finish-in-one; replay keeps the three-call runs).
    "a:finish_backup bk1 web.b1",
]


def backup(w: World) -> tuple[object, ...]:
    inp = VMBackupInput(plan=w.plan, vm=ResolvedVM(ref=VMRef(cluster="ca", vm="web"), site="a"), repository="r",
                        repository_path="/repo", point_id="bk1", creation=PointCreation.AUTO,
                        retention=Retention(kind=RetentionKind.FOREVER))
    return VMBackupWorkflow.run, inp, vm_backup_id(w.plan, "ca", "web")


async def test_a_backup_in_order(client: Client) -> None:
    w = world()
    assert await execute(client, w, *backup(w)) is None
    assert w.trace() == BACKUP and w.snapshots["web"] == ["web.s1"] and w.backup_points == ["bk1"]


@pytest.mark.parametrize(("step", "action", "undo"), [
    pytest.param("a:prepare_backup web", fail(), [], id="prepare: nothing made yet"),
    pytest.param("a:create_snapshot web", fail(), ["a:cleanup_backup - bk1"], id="snapshot"),
    pytest.param("a:transfer_backup web.s1 -> bk1", fail("TransportUnreachable", retryable=True),
                 ["a:cleanup_backup web.s1 bk1"], id="transfer (retried first)"),
    pytest.param("a:transfer_backup web.s1 -> bk1", hang, ["a:cleanup_backup web.s1 bk1"],
                 id="cancelled during the transfer (the window closed)"),
])
async def test_a_backup_failed_or_stopped_before_its_point_leaves_nothing(
        client: Client, step: str, action: Action, undo: list[str]) -> None:
    w = world()
    w.on(step, action)
    failed = await execute(client, w, *backup(w), cancel_at=step if action is hang else None)
    if action is hang:
        assert_cancelled(failed)
    else:
        assert_failed(failed, "TransportUnreachable" if "transfer" in step else "DriverError")
        assert w.attempts(step) == (4 if "transfer" in step else 1)
    assert w.trace() == runbook_until(BACKUP, step) + undo
    assert w.snapshots["web"] == ["web.b1"] and w.backup_points == []  # the old base kept, no point


async def test_a_failure_after_the_point_was_recorded_keeps_it_and_its_snapshot(client: Client) -> None:
    """finish_backup records the point before it releases or prunes anything: a failure
    after the record (here: the old base's release) leaves a real point, which the next
    backup builds on, so the abandon step finds it recorded and deletes nothing."""
    w = world()
    w.on("a:finish_backup bk1 web.b1", fail(), after=True)
    assert_failed(await execute(client, w, *backup(w)), "DriverError")
    assert w.trace() == [*BACKUP, "a:abandon_backup web.s1 bk1"]
    assert w.backup_points == ["bk1"] and "web.s1" in w.snapshots["web"]


@pytest.mark.parametrize("kind", ["CatalogError", "DriverError"])
async def test_a_backup_whose_point_cannot_be_recorded_cleans_up(client: Client, kind: str) -> None:
    """The record itself failed: the point is abandoned (the catalog will never take it) and
    its new snapshot goes, leaving the VM as it was before the backup."""
    w = world()
    w.on("a:finish_backup bk1 web.b1", fail(kind))
    run, inp, wf_id = backup(w)
    assert_failed(await execute(client, w, run, inp, wf_id), kind)
    assert w.trace() == [*BACKUP, "a:abandon_backup web.s1 bk1"]
    assert w.snapshots["web"] == ["web.b1"] and w.backup_points == []
    if (target := os.environ.get("ABDR_RECORD_HISTORIES")) and kind == "CatalogError":  # the patch's replay history
        history = await client.get_workflow_handle(wf_id).fetch_history()
        Path(target, "VMBackup.abandon-logic.json").write_text(history.to_json())


async def test_a_backup_stopped_at_its_end_abandons_or_keeps_by_the_catalog(client: Client) -> None:
    """A cancel (the window closed) while finish_backup runs: the abandon step still runs
    after the cancel and the catalog decides; this double had not recorded the point yet."""
    w = world()
    w.on("a:finish_backup bk1 web.b1", hang)
    assert_cancelled(await execute(client, w, *backup(w), cancel_at="a:finish_backup bk1 web.b1"))
    assert w.trace() == [*BACKUP, "a:abandon_backup web.s1 bk1"]
    assert w.snapshots["web"] == ["web.b1"] and w.backup_points == []


# -- restore -----------------------------------------------------------------------------

INPLACE = [
    "resolve_restore",
    "record_job RUNNING",
    "a:find_vm db",
    "a:set_power db off",
    "a:apply_config db",
    "a:restore_disks bk1 -> db",
    "a:set_power db on",
    "record_job SUCCESS",
]
REBUILD = [*INPLACE[:2], "a:create_vm_for_restore db2", "a:restore_disks bk1 -> db2", "a:set_power db2 on",
           INPLACE[-1]]


def restore(w: World, mode: RestoreMode) -> tuple[object, ...]:
    req = (RestoreRequest(point_id="bk1", mode=mode, vm="ca/db", power_on=True) if mode == RestoreMode.INPLACE
           else RestoreRequest(point_id="bk1", mode=mode, new_name="db2", power_on=True))
    return RestoreWorkflow.run, RestoreInput(request=req), f"restore/{w.plan}/db"  # the doubles find w by the id


@pytest.mark.parametrize(("mode", "runbook"), [(RestoreMode.INPLACE, INPLACE), (RestoreMode.REBUILD, REBUILD)])
async def test_a_restore_in_order(client: Client, mode: RestoreMode, runbook: list[str]) -> None:
    w = world()
    w.power["db"] = RUNNING
    assert await execute(client, w, *restore(w, mode)) is None
    assert w.trace() == runbook


@pytest.mark.parametrize(("mode", "step"), [
    *[(RestoreMode.INPLACE, step) for step in INPLACE[2:7]],
    *[(RestoreMode.REBUILD, step) for step in REBUILD[2:5]],
])
async def test_a_restore_stops_where_it_failed(client: Client, mode: RestoreMode, step: str) -> None:
    """Nothing runs after the failure: above all the VM is not started on half-written disks."""
    w = world()
    w.power["db"] = RUNNING
    w.on(step, fail())
    assert_failed(await execute(client, w, *restore(w, mode)), "DriverError")
    runbook = INPLACE if mode == RestoreMode.INPLACE else REBUILD
    # A REBUILD that failed after creating its VM deletes it: a half-written VM is no restore.
    undo = ["a:delete_vm db2"] if mode == RestoreMode.REBUILD and step != REBUILD[2] else []
    assert w.trace() == runbook_until(runbook, step) + undo
    if step.endswith("restore_disks bk1 -> db"):
        assert w.power["db"] == STOPPED
