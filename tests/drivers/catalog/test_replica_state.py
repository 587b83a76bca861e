"""A replica's state and claim in the catalog: compare-and-set changes in one transaction,
claims, idempotent retries, races between two writers, and a history kept out of the
object (paged), on SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from drivers.catalog.engine import make_engine, migrate
from drivers.catalog.store import Catalog, ConcurrentChange, StateConflict
from models.inventory import Site
from models.replication import ReplicaState, ReplicationPlanSpec
from models.replication_jobs import Claim, ObjectChange

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=timezone.utc)
S = ReplicaState


def plan_spec(name: str = "dr") -> ReplicationPlanSpec:
    return ReplicationPlanSpec.model_validate({
        "name": name, "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "c1", "target_site": "b",
        "target_cluster": "c2", "vms": [{"cluster": "c1", "vm": "web"}],
        "schedule": {"kind": "MINUTELY", "interval": 15}, "retention": {"kind": "COUNT", "value": 3}})


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    c = Catalog(catalog_url)
    c.add_site(Site(name="a"))
    c.add_site(Site(name="b"))
    c.add_replication_plan(plan_spec())
    yield c
    c.close()


def ch(to: ReplicaState | None = None, **kw: object) -> ObjectChange:
    return ObjectChange(plan="dr", vm="web", to=to, at=T0, **kw)


def ready(c: Catalog) -> None:
    c.change_replication_object(ch(S.REPLICATING))
    c.change_replication_object(ch(S.READY, updates={"replica_point": "p1"}))


def test_a_change_needs_the_expected_state_and_changes_nothing_otherwise(catalog: Catalog) -> None:
    ready(catalog)
    before = catalog.replication_object("dr", "web")
    with pytest.raises(StateConflict, match="is READY, not FAILOVER_TEST"):
        catalog.change_replication_object(ch(S.READY, expect=[S.FAILOVER_TEST], updates={"replica_point": "x"}))
    assert catalog.replication_object("dr", "web") == before
    after = catalog.change_replication_object(ch(S.FAILOVER_TEST, expect=[S.READY]))
    assert (after.state, after.version) == (S.FAILOVER_TEST, before.version + 1)


def test_a_drill_ending_after_a_failover_leaves_the_failover(catalog: Catalog) -> None:
    """The bug the drill's `finally` had: its cleanup set READY over a real failover."""
    ready(catalog)
    catalog.change_replication_object(ch(S.FAILOVER_TEST, expect=[S.READY]))
    catalog.change_replication_object(ch(S.FAILOVER, expect=[S.READY, S.FAILOVER_TEST]))
    with pytest.raises(StateConflict, match="is FAILOVER, not FAILOVER_TEST"):
        catalog.change_replication_object(ch(S.READY, expect=[S.FAILOVER_TEST]))
    assert catalog.replication_object("dr", "web").state == S.FAILOVER


def test_claims_exclude_other_operations_until_released(catalog: Catalog) -> None:
    ready(catalog)
    rep = catalog.change_replication_object(ch(S.REPLICATING, claim=Claim.TAKE, owner="replication/dr/web"))
    assert rep.owner == "replication/dr/web"
    with pytest.raises(StateConflict, match="busy: replication/dr/web holds it"):
        catalog.change_replication_object(ch(claim=Claim.TAKE, owner="dr/dr/web"))
    with pytest.raises(StateConflict, match="not held by dr/dr/web but by replication/dr/web"):
        catalog.change_replication_object(ch(S.READY, claim=Claim.RELEASE, owner="dr/dr/web"))
    # Taking one's own claim again (an activity retry) is fine.
    catalog.change_replication_object(ch(claim=Claim.TAKE, owner="replication/dr/web"))
    done = catalog.change_replication_object(ch(S.READY, claim=Claim.RELEASE, owner="replication/dr/web"))
    assert (done.state, done.owner) == (S.READY, None)
    fo = catalog.change_replication_object(ch(claim=Claim.TAKE, owner="dr/dr/web", expect=[S.READY]))
    assert fo.owner == "dr/dr/web"


def test_a_retried_change_applies_once(catalog: Catalog) -> None:
    ready(catalog)
    first = catalog.change_replication_object(ch(S.FAILOVER_TEST, expect=[S.READY], change_id="drill/dr/web/1"))
    # The activity's first attempt committed but its worker died before reporting; the retry:
    again = catalog.change_replication_object(ch(S.FAILOVER_TEST, expect=[S.READY], change_id="drill/dr/web/1"))
    assert again == first
    page, total = catalog.replica_history("dr", "web")
    assert [c.to_state for _, c in page].count(S.FAILOVER_TEST) == 1 and total == 3


def test_two_operations_racing_for_a_replica_one_wins(catalog: Catalog, catalog_url: str) -> None:
    """Two writers (separate connections, as two workers would be) take the claim at once:
    exactly one gets it; the other is refused or told to retry, never both succeed."""
    ready(catalog)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        c = Catalog(catalog_url, upgrade=False)
        barrier.wait()
        try:
            c.change_replication_object(ch(S.FAILOVER_TEST if i % 2 else None, claim=Claim.TAKE, owner=f"op{i}",
                                           expect=[S.READY]))
            outcomes.append("won")
        except (StateConflict, ConcurrentChange):
            outcomes.append("lost")
        except sa.exc.OperationalError:  # SQLite's writer lock, which a retry also fixes
            outcomes.append("lost")
        finally:
            c.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1, outcomes
    obj = catalog.replication_object("dr", "web")
    assert obj.owner is not None and obj.version == 3


def test_history_lives_in_the_catalog_and_pages(catalog: Catalog) -> None:
    """A plan years old: the object stays the same size; the history pages newest first."""
    ready(catalog)
    for i in range(300):
        catalog.change_replication_object(ObjectChange(plan="dr", vm="web", to=S.REPLICATING, reason=f"run {i}", at=T0 + timedelta(minutes=i)))
        catalog.change_replication_object(ObjectChange(plan="dr", vm="web", to=S.READY, reason=f"point {i}", at=T0 + timedelta(minutes=i)))
    obj = catalog.replication_object("dr", "web")
    assert len(obj.model_dump_json()) < 1024
    page, total = catalog.replica_history("dr", "web", limit=50)
    assert total == 602 and len(page) == 50 and page[0][1].reason == "point 299"
    older, _ = catalog.replica_history("dr", "web", limit=50, before=page[-1][0])
    assert older[0][0] < page[-1][0] and older[0][1].reason == "point 274"


def test_an_unknown_reference_is_refused(catalog: Catalog) -> None:
    with pytest.raises(ValueError, match="not a replication object reference"):
        catalog.change_replication_object(ch(updates={"state": "READY"}))


def test_the_migration_moves_inline_history_into_the_table(catalog_url: str) -> None:
    migrate(catalog_url, "0002")
    engine = make_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO replication_plans (name, spec, status, last_result, created_at, updated_at) "
                             "VALUES ('old', '{}', 'WORKING', 'NEVER_EXECUTE', :t, :t)"), {"t": T0.replace(tzinfo=None)})
        history = ('[{"from_state": "NOT_READY", "to_state": "REPLICATING", "at": "2026-11-30T01:00:00+00:00", '
                   '"reason": "run 1"}, {"from_state": "REPLICATING", "to_state": "READY", '
                   '"at": "2026-11-30T01:01:00+00:00", "reason": "point 1"}]')
        conn.execute(sa.text("INSERT INTO replication_objects (plan, source_cluster, source_vm, replica_cluster, "
                             "replica_vm, state, history) VALUES ('old', 'c1', 'web', 'c2', 'web-r', 'READY', :h)"),
                     {"h": history})
    engine.dispose()
    c = Catalog(catalog_url)  # upgrades to head
    try:
        obj = c.replication_object("old", "web")
        assert (obj.state, obj.version, obj.owner) == (S.READY, 0, None)
        page, total = c.replica_history("old", "web")
        assert total == 2 and [e.reason for _, e in page] == ["point 1", "run 1"]
        assert page[0][1].at == datetime(2026, 11, 30, 1, 1, tzinfo=timezone.utc)
    finally:
        c.close()


def test_a_failed_batchs_claims_are_let_go_and_no_one_elses(catalog: Catalog) -> None:
    """release_batch_claims (the plan run's undo after a replica batch that failed for good,
    on the real catalog): the replica the batch's owner holds goes back to READY, unclaimed;
    a replica another owner holds, or none, is not touched; calling it again changes nothing."""
    from temporalio.testing import ActivityEnvironment

    from activities.replication_catalog import ReplicationCatalogActivities
    from models.inventory import Consistency
    from models.replication_jobs import ReplicaCarryInput, ReplicaCarryVM
    from models.restore_points import PointCreation

    ready(catalog)
    catalog.change_replication_object(ch(S.REPLICATING, owner="Replicate/dr/web", claim=Claim.TAKE))
    acts = ReplicationCatalogActivities(catalog)

    def release(owner: str) -> None:
        ActivityEnvironment().run(acts.release_batch_claims, ReplicaCarryInput(
            plan="dr", creation=PointCreation.AUTO, consistency=Consistency.CRASH_CONSISTENT,
            vms=[ReplicaCarryVM(index=0, vm="web", point_id="p2", owner=owner, source_snapshot="s1")]))

    release("someone-else")
    obj = catalog.replication_object("dr", "web")
    assert (obj.state, obj.owner) == (S.REPLICATING, "Replicate/dr/web")
    release("Replicate/dr/web")
    obj = catalog.replication_object("dr", "web")
    assert (obj.state, obj.owner, obj.replica_point) == (S.READY, None, "p1")
    version = obj.version
    release("Replicate/dr/web")
    assert catalog.replication_object("dr", "web").version == version
