"""What the record says of a replication is what happened: the seed point is FULL (every
byte moved, no base) and the next INCREMENTAL; a one-VM plan that a permanent failover
STOPPED has its schedule paused too, so it fires no more runs. Real worker processes, the
real CLI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from drivers.local.tools import rewrite_fraction
from models.ids import replicate_id, replication_run_id
from starter.runtime.schedules import schedule_id
from tests.e2e.test_plan_options import abdr
from tests.e2e.test_replication import DR, dr, make_vm, plan, server  # noqa: F401 (fixtures)


def cli_json(world: DR, *argv: str) -> Any:
    return json.loads(abdr(world, *argv, "--json"))


async def test_seed_is_full_and_a_stopped_plan_stops_its_schedule(dr: DR) -> None:  # noqa: F811
    assert dr.client is not None
    src = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    seed = cli_json(dr, "replication-plan", "run", "dr", "--wait")
    assert seed["vms"][0]["seeded"], seed
    rewrite_fraction(dr.a, src, "disk0", 0.05, seed=3)
    cli_json(dr, "replication-plan", "run", "dr", "--wait")
    points = cli_json(dr, "restore-point", "list", "--plan", "dr")
    assert [p["type"] for p in points] == ["FULL", "INCREMENTAL"], points

    handle = dr.client.client.get_schedule_handle(schedule_id("dr", "replication"))
    assert not (await handle.describe()).schedule.state.paused
    cli_json(dr, "failover", "dr", "web", "--source-shutdown", "poweroff", "--wait")
    cli_json(dr, "permanent-failover", "dr", "web", "--wait")
    shown = cli_json(dr, "replication-plan", "show", "dr")
    assert shown["status"] == "STOPPED", shown
    state = (await handle.describe()).schedule.state
    assert state.paused and "permanently" in state.note, state


async def test_a_paged_replication_run_carries_only_its_page_and_each_child_its_own_vm(dr: DR) -> None:  # noqa: F811
    """Ten VMs in pages of 4: three workflow runs; each run's resolve result holds only its
    page's objects and VMs (not the plan's), each Replicate child's input names only its own
    VM and so does its view of the plan; every replica equals its source."""
    assert dr.client is not None
    names = [f"vm{i}" for i in range(10)]
    for n in names:
        make_vm(dr.a, n, 1 << 20)
    await dr.client.create_replication_plan(plan(vms=[{"cluster": "ca", "vm": n} for n in names]))
    since = datetime.now(timezone.utc)  # the module's dev server holds other tests' runs of "dr"
    summary = await dr.client.result(await dr.client.run_replication_plan("dr", page_size=4))
    assert (summary.vms_total, summary.vms_ok, summary.runs) == (10, 10, 3), summary
    for n in names:
        dr.same(dr.b, f"{n}-replica", dr.disk(dr.a, n), f"replica of {n}")
    temporal = dr.client.client
    runs = [w async for w in temporal.list_workflows(
        f"WorkflowId = '{replication_run_id('dr')}' AND StartTime >= '{since.isoformat()}'")]
    assert len(runs) == 3
    for run in runs:
        events = (await temporal.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()).events
        [page] = [r for r in completed(events) if isinstance(r, dict) and "objects" in r]
        assert page["object_count"] == 10 and 1 <= len(page["objects"]) <= 4
        assert {v["vm"] for v in page["spec"]["vms"]} == {o["source"]["vm"] for o in page["objects"]}
        for e in events:
            if e.HasField("start_child_workflow_execution_initiated_event_attributes"):
                child = json.loads(e.start_child_workflow_execution_initiated_event_attributes.input.payloads[0].data)
                assert [v["vm"] for v in child["spec"]["vms"]] == [child["vm"]]
    child_events = (await temporal.get_workflow_handle(replicate_id("dr", "vm3")).fetch_history()).events
    [replica] = [r for r in completed(child_events) if isinstance(r, dict) and "obj" in r]
    assert [v["vm"] for v in replica["spec"]["vms"]] == ["vm3"]


def completed(events: Any) -> list[Any]:
    """The decoded results of a history's completed activities, local ones (a marker holding
    the result: the catalog's calls) and normal ones."""
    out = []
    for e in events:
        if e.HasField("activity_task_completed_event_attributes"):
            payloads = e.activity_task_completed_event_attributes.result.payloads
        elif e.HasField("marker_recorded_event_attributes") and \
                e.marker_recorded_event_attributes.marker_name == "core_local_activity":
            payloads = e.marker_recorded_event_attributes.details["result"].payloads
        else:
            continue
        for p in payloads:
            if p.metadata.get("encoding") == b"json/plain":  # not binary/null (a None result)
                out.append(json.loads(p.data))
    return out
