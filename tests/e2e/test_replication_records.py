"""What the record says of a replication is what happened: the seed point is FULL (every
byte moved, no base) and the next INCREMENTAL; a one-VM plan that a permanent failover
STOPPED has its schedule paused too, so it fires no more runs. Real worker processes, the
real CLI."""

from __future__ import annotations

import json
from typing import Any

from drivers.local.tools import rewrite_fraction
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
