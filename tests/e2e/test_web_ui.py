"""What the Temporal Web UI shows of runs started from the CLI: each carries its summary
(the list's "Summary" column) and details, its current details name the phase it is in (or
ended in), and a plan's filter finds its restores too. Read back from the real dev server."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from models.ids import dr_id, drill_id, maintenance_id, plan_run_id, replication_run_id, restore_id
from tests.e2e.conftest import Stack, run_cli
from tests.e2e.test_backup_restore import plan_spec
from tests.e2e.test_replication import DR, make_vm, plan, server  # noqa: F401 (server: the dr fixture's)
from tests.e2e.test_replication import dr as dr  # noqa: F401 (the fixture, used by name)


@dataclass
class Shown:
    summary: str | None
    details: str | None
    current: str


async def shown(client: Client, workflow_id: str) -> Shown:
    """The newest run of `workflow_id` as the Web UI reads it: describe's user metadata and
    the SDK's built-in metadata query (which carries the current details)."""
    handle = client.get_workflow_handle(workflow_id)
    d = await handle.describe()
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return Shown(await d.static_summary(), await d.static_details(), meta.current_details)


async def test_backup_restore_and_maintenance_runs_tell_their_story(stack: Stack) -> None:
    stack.make_vm("web")
    await stack.client.create_backup_plan(plan_spec("ui-story", ["web"]))
    run = await stack.cli_json("backup-plan", "run", "ui-story", "--full", "--wait")
    got = await shown(stack.client.client, plan_run_id("ui-story"))
    assert got.summary == "manual full run of backup plan ui-story"
    assert got.details is not None and "- **plan**: `ui-story`" in got.details and "- **full**: `True`" in got.details
    assert got.current.startswith("**done**"), got.current

    point = run["vms"][0]["point_id"]
    await stack.cli("restore", point, "--mode", "rebuild", "--new-name", "web-copy", "--wait")
    got = await shown(stack.client.client, restore_id("c1", "web-copy"))
    assert got.summary == f"REBUILD restore of c1/web point {point} to c1/web-copy"
    assert got.details is not None and f"- **request.point_id**: `{point}`" in got.details
    assert got.current.startswith("**done** wrote"), got.current
    # The plan's filter in the UI shows the restore of its point beside its runs (the plan's
    # name is this test's own: the session's server keeps other tests' closed runs).
    found = [w async for w in stack.client.client.list_workflows("AbdrPlan = 'ui-story' AND WorkflowType = 'Restore'")]
    assert [w.id for w in found] == [restore_id("c1", "web-copy")]

    await stack.cli("repository", "verify", "r1", "--gc", "--wait")
    got = await shown(stack.client.client, maintenance_id("r1"))
    assert got.summary is not None and got.summary == "maintenance of repository r1: verify, gc"
    assert got.current.startswith("**done**"), got.current


async def test_replication_and_dr_runs_tell_their_story(dr: DR) -> None:  # noqa: F811 (the fixture)
    assert dr.client is not None
    client = dr.client.client

    async def cli(*args: str) -> None:
        await run_cli(dr.env, *args)

    async def check(workflow_id: str, summary: str, current: str) -> None:
        got = await shown(client, workflow_id)
        assert got.summary == summary, got
        assert got.details is not None and "- **plan**: `dr`" in got.details, got
        assert got.current.startswith(f"**{current}**"), got

    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await cli("replication-plan", "run", "dr", "--wait")
    await check(replication_run_id("dr"), "manual run of replication plan dr", "done")

    await cli("failover-test", "start", "dr", "web", "--wait")
    await check(drill_id("dr", "web"), "failover test of dr/web at point latest", "running")
    await cli("failover-test", "cleanup", "dr", "web")
    await check(drill_id("dr", "web"), "failover test of dr/web at point latest", "cleanup")

    dr.a.power_off(src_id)
    await cli("failover", "dr", "web", "--wait")
    await check(dr_id("dr", "web"), "failover to point latest of dr/web", "done")
    await cli("failover", "undo", "dr", "web", "--wait")
    await check(dr_id("dr", "web"), "undo failover of dr/web", "undo")
    await cli("failover", "dr", "web", "--wait")
    await cli("failback", "dr", "web", "--wait")
    await check(dr_id("dr", "web"), "failback of dr/web", "done")
    dr.a.power_off(src_id)
    await cli("failover", "dr", "web", "--wait")
    await cli("permanent-failover", "dr", "web", "--wait")
    await check(dr_id("dr", "web"), "permanent failover of dr/web", "done")
    # Every DR run of the plan is found by its filter (the operations' own tags and the start's).
    found = {w.workflow_type async for w in client.list_workflows("AbdrPlan = 'dr'")}
    assert {"FailoverTest", "Failover", "UndoFailover", "Failback", "PermanentFailover"} <= found, found
