"""Replay recorded histories against today's workflow code: a change that would break a
run already in flight fails here (use `workflow.patched` for compatible changes).

The histories were recorded by running the e2e suite with ABDR_RECORD_HISTORIES set
(tests/e2e/histories.py; `*.skeleton-logic.json` from tests/workflows/test_plan_runs_workflow_logic.py,
stub children; `BackupPlanRun.cancelled.json`, a run `abdr job cancel` stopped, saved from
tests/e2e/test_cli_operations.py's cancel test by hand, since only completed runs are recorded; `BackupPlanRun.pages-*.json`, the first and last runs of a chain in pages, and
`VMBackup.finish-in-one.json` / `VMBackup.skip-unchanged.json` and `BackupPlanRun.carry.json` (a page's
no-change batch and one changed VM's child), from tests/e2e/test_plan_scale.py via
tests/e2e/histories.py's export_chain; `AdminService.json`, a run of the admin service that continued as
new, from tests/e2e/test_admin_service.py; `FailoverTest.asks-the-guest.json`, `Failback.careful-undo.json`,
`ReplicationPlanRun.pages.json`, `PermanentFailover.reprotect-undo.json` and `Restore.rebuild-undo.json`, the
runs of tests/e2e/test_replication.py and test_backup_restore.py that pass those patch markers; `*.local-catalog.json` and `AdminService.local-admin.json`, runs whose catalog calls were local activities, from test_backup_restore.py, test_replication.py and test_admin_service.py; `AdminService.only-reads-local.json`, a run whose creating calls are normal activities again, from test_admin_service.py; `VMBackup.abandon-logic.json`, a backup whose point could not be recorded, from tests/workflows/test_backup_restore_workflow_logic.py, doubles); re-record them only for a deliberate, versioned change. A file
is `<type>.json`, or `<type>.<version>.json` for a run of a later, patched version of
its type, kept beside the older one so both branches stay replayed."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import workflows

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def recorded_type(path: Path) -> str:
    return path.name.split(".")[0]


# Every type the worker registers (workflows.ALL), so a new workflow without a history fails here.
REGISTERED = {workflow._Definition.must_from_class(cls).name for cls in workflows.ALL}


def test_every_registered_workflow_type_has_a_recorded_history() -> None:
    recorded = {recorded_type(p) for p in HISTORIES}
    assert REGISTERED <= recorded, f"no recorded history for: {sorted(REGISTERED - recorded)}"
    assert recorded <= REGISTERED, f"histories of unregistered types: {sorted(recorded - REGISTERED)}"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(recorded_type(path), path.read_text())
    replayer = Replayer(workflows=workflows.ALL, data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


def patch_ids_in_workflows() -> dict[str, str]:
    """Every `workflow.patched(X)` of the workflow modules, X resolved to its id: {id: module}.
    The frozen v1 modules are left out: only runs started before today's code reach them."""
    import ast
    import importlib
    import pkgutil

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(workflows.__path__):
        if info.name.startswith("v1"):
            continue
        module = importlib.import_module(f"workflows.{info.name}")
        tree = ast.parse(Path(module.__file__ or "").read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "patched"
                    and node.args):
                expr = ast.unparse(node.args[0])
                value = eval(expr, vars(module))  # a constant of the module, or of one it imports
                found[value] = info.name
    return found


def recorded_patch_ids() -> set[str]:
    import base64
    import json

    ids: set[str] = set()
    for path in HISTORIES:
        for event in json.loads(path.read_text())["events"]:
            marker = event.get("markerRecordedEventAttributes")
            for payload in (marker or {}).get("details", {}).get("patch-data", {}).get("payloads", []):
                ids.add(json.loads(base64.b64decode(payload["data"]))["id"])
    return ids


# Runs of the old Admin workflow pass this marker; admin calls go to AdminService now, so no
# new run of Admin is recorded (it stays registered only for runs in flight).
UNRECORDABLE = {"admin-closed-operations"}


def test_every_patch_marker_has_a_recorded_history_that_passes_it() -> None:
    missing = sorted(set(patch_ids_in_workflows()) - recorded_patch_ids() - UNRECORDABLE)
    assert not missing, f"no recorded history passes these patch markers: {missing}"
