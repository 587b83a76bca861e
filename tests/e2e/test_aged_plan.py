"""A replication plan as it is after months at a 5-minute RPO (thousands of state changes,
thousands of replica points): every DR operation still runs, and no workflow input, result
or activity payload grows with the plan's age. Temporal refuses payloads over 2 MB and warns
over 256 KB; here every history event of every run stays under 32 KiB."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from temporalio.client import Client

from drivers.local.tools import rewrite_fraction
from models.catalog import ReplicaChangeRow
from models.inventory import ShutdownMode
from models.requests import FailbackRequest, FailoverRequest, FailoverTestRequest
from models.restore_points import PointCreation, PointType, RestorePointSummary
from tests.e2e.test_replication import DR, dr, dr_result, make_vm, plan, replica, replicate, server  # noqa: F401,F811

EVENT_LIMIT = 32 << 10
CHANGES, POINTS = 20_000, 3_000  # ~35 days of 5-minute runs; a year of hourly points


def age(dr: DR) -> None:
    """Write months of history and points straight into the catalog, as they would have built up."""
    start = datetime.now(timezone.utc) - timedelta(days=60)
    rows = [dict(plan="dr", source_cluster="ca", source_vm="web", from_state=frm, to_state=to,
                 at=start + timedelta(minutes=5 * i // 2), reason=f"run {i // 2}", owner="replication/dr/web")
            for i in range(CHANGES) for frm, to in [("READY", "REPLICATING") if i % 2 == 0 else ("REPLICATING", "READY")]]
    with dr.catalog.engine.begin() as conn:
        conn.execute(sa.insert(ReplicaChangeRow), rows)
    for i in range(POINTS):
        dr.catalog.add_restore_point(RestorePointSummary(
            id=f"web.old{i:05d}", plan="dr", cluster="cb", vm="web-replica", type=PointType.INCREMENTAL,
            creation=PointCreation.AUTO, created_at=start + timedelta(hours=i)))


async def largest_events(client: Client) -> list[tuple[int, str, str]]:
    """(size, workflow id, event type) of the largest event of every workflow run."""
    out = []
    async for wf in client.list_workflows():
        history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        size, kind = max((e.ByteSize(), str(e.event_type)) for e in history.events)
        out.append((size, wf.id, kind))
    return sorted(out, reverse=True)


async def test_an_aged_plan_keeps_every_payload_small(dr: DR) -> None:
    src_id = make_vm(dr.a, "web")
    await dr.client.create_replication_plan(plan())
    await replicate(dr)
    age(dr)
    assert (await dr.client.replica_history("dr", "web", limit=1)).total > CHANGES

    rewrite_fraction(dr.a, src_id, "disk0", 0.05, seed=71)
    at_point = dr.disk(dr.a, "web")
    second = await replicate(dr)  # retention (COUNT 5) expires the thousands of old points
    dr.same(dr.b, "web-replica", at_point, "replica of an aged plan")
    left = await dr.client.list_restore_points(plan="dr")
    assert len(left) < 10 and second.vms[0].point_id in {p.id for p in left}  # thousands expired

    drill = await dr.client.start_failover_test(FailoverTestRequest(plan="dr", vm="web", test_network="isolated",
                                                                    cleanup_after_s=1))
    assert (await dr_result(drill)).state == "READY"
    fo = await dr_result(await dr.client.failover(FailoverRequest(plan="dr", vm="web",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
    assert fo.state == "FAILOVER"
    dr.same(dr.b, "web-replica", at_point, "replica after failover")
    rewrite_fraction(dr.b, dr.b.find_vm("web-replica").id, "disk0", 0.02, seed=72)
    served = dr.disk(dr.b, "web-replica")
    assert (await dr_result(await dr.client.failback(FailbackRequest(plan="dr", vm="web")))).state == "READY"
    dr.same(dr.a, "web", served, "original after failback")
    assert (await replica(dr)).transitions > CHANGES

    events = await largest_events(dr.client.client)
    assert len(events) >= 6
    assert events[0][0] < EVENT_LIMIT, f"payloads grow with the plan's age: {events[:5]}"
