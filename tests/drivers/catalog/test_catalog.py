"""The catalog suite, run on SQLite and on PostgreSQL (a throwaway database per test)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from drivers.catalog.engine import alembic_config
from drivers.catalog.store import AlreadyExists, Catalog, InUse, NotFound, StateConflict
from models.inventory import VM, Cluster, Site, VMConfig
from models.plans import BackupPlanSpec, PlanStatus, RunResult, VMRef
from models.restore_points import PointCreation, PointState, PointType, RestorePointSummary
from models.services import RepositorySpec

T0 = datetime(2026, 11, 25, 1, 0, tzinfo=timezone.utc)
T = TypeVar("T")


@pytest.fixture
def catalog(catalog_url: str) -> Catalog:
    c = Catalog(catalog_url)
    yield c
    c.close()


def seed(c: Catalog) -> BackupPlanSpec:
    c.add_site(Site(name="a"))
    c.add_cluster(Cluster(name="c1", site="a"))
    c.add_repository(RepositorySpec(name="repo1", path="/srv/repo1", site="a"))
    spec = BackupPlanSpec.model_validate({
        "name": "gold", "vms": [{"cluster": "c1", "vm": "web"}, {"cluster": "c1", "vm": "db"}],
        "repository": "repo1", "schedule": {"kind": "DAILY", "times": ["01:00"]},
        "window": {"start": "22:00", "end": "06:00"}, "retention": {"kind": "COUNT", "value": 3}})
    c.add_backup_plan(spec)
    return spec


def test_migrations_match_the_models(catalog: Catalog) -> None:
    with catalog.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert ctx.get_current_revision() == ScriptDirectory.from_config(alembic_config(catalog.url)).get_current_head()
        assert compare_metadata(ctx, SQLModel.metadata) == []


def test_upgrade_in_place_is_idempotent(catalog_url: str) -> None:
    c1 = Catalog(catalog_url)
    seed(c1)
    c1.close()
    c2 = Catalog(catalog_url)  # a second start migrates again: nothing changes, nothing is lost
    assert [p.name for p in c2.list_backup_plans()] == ["gold"]
    c2.close()


def test_plans_round_trip_and_refuse_duplicates(catalog: Catalog) -> None:
    spec = seed(catalog)
    assert catalog.get_backup_plan("gold") == spec
    with pytest.raises(AlreadyExists, match="backup plan 'gold' already exists"):
        catalog.add_backup_plan(spec)
    with pytest.raises(NotFound, match="repository 'nope' not found"):
        catalog.add_backup_plan(spec.model_copy(update={"name": "silver", "repository": "nope"}))
    assert catalog.plans_protecting(VMRef(cluster="c1", vm="db")) == [("backup", "gold")]
    catalog.update_backup_plan(spec.model_copy(update={"vms": [VMRef(cluster="c1", vm="web")]}))
    assert catalog.plans_protecting(VMRef(cluster="c1", vm="db")) == []
    assert catalog.backup_plan_state("gold") == (PlanStatus.WORKING, RunResult.NEVER_EXECUTE, None)
    catalog.set_backup_plan_state("gold", PlanStatus.PAUSED, RunResult.SUCCESS, T0)
    assert catalog.backup_plan_state("gold") == (PlanStatus.PAUSED, RunResult.SUCCESS, T0)
    with pytest.raises(InUse, match="repository 'repo1' is used by backup plans \\['gold'\\]"):
        catalog.delete_repository("repo1")
    catalog.delete_backup_plan("gold")
    with pytest.raises(NotFound, match="backup plan 'gold' not found"):
        catalog.get_backup_plan("gold")
    catalog.delete_repository("repo1")


def test_cluster_needs_its_site(catalog: Catalog) -> None:
    with pytest.raises(NotFound, match="site 'zz' \\(of cluster 'c9'\\) not found"):
        catalog.add_cluster(Cluster(name="c9", site="zz"))


def test_restore_points_are_tz_aware_and_idempotent(catalog: Catalog) -> None:
    seed(catalog)
    for i in range(3):
        p = RestorePointSummary(id=f"p{i}", plan="gold", cluster="c1", vm="web", repository="repo1",
                                type=PointType.FULL if i == 0 else PointType.INCREMENTAL,
                                creation=PointCreation.AUTO, created_at=T0 + timedelta(hours=i),
                                logical_bytes=10, stored_bytes=5)
        catalog.add_restore_point(p, base_id=f"p{i-1}" if i else None)
        catalog.add_restore_point(p)  # a retried activity records it again: no error, no duplicate
    points = catalog.list_restore_points(vm=VMRef(cluster="c1", vm="web"))
    assert [p.id for p in points] == ["p0", "p1", "p2"]
    assert points[1].created_at == T0 + timedelta(hours=1) and points[1].created_at.tzinfo is not None
    catalog.delete_restore_point("p1")
    assert [p.id for p in catalog.list_restore_points(plan="gold")] == ["p0", "p2"]


def point(pid: str, hour: int = 0) -> RestorePointSummary:
    return RestorePointSummary(id=pid, plan="gold", cluster="c1", vm="web", repository="repo1", type=PointType.FULL,
                               creation=PointCreation.AUTO, created_at=T0 + timedelta(hours=hour))


def test_an_abandoned_point_is_never_recorded_and_a_recorded_one_never_abandoned(catalog: Catalog) -> None:
    """A backup whose end failed asks the catalog (activities/backup.py::abandon_backup):
    a recorded point is kept; an unrecorded one is abandoned for good, so a late record of
    it (a worker that lost touch with Temporal) cannot name files that are gone."""
    seed(catalog)
    catalog.add_restore_point(point("p0"))
    assert catalog.abandon_point(point("p0")) is False
    assert [(p.id, p.state) for p in catalog.list_restore_points(plan="gold")] == [("p0", PointState.READY)]
    assert catalog.abandon_point(point("p1", 1)) is True
    assert catalog.abandon_point(point("p1", 1)) is True  # a retried abandon
    with pytest.raises(StateConflict, match="restore point 'p1' was abandoned"):
        catalog.add_restore_point(point("p1", 1))
    assert [p.id for p in catalog.list_restore_points(plan="gold")] == ["p0"]  # no placeholder, no p1


def until_answered(call: Callable[[], T]) -> T:
    """Ask again while the database is busy, as the activity's retry policy would."""
    for _ in range(200):
        try:
            return call()
        except OperationalError:  # SQLite: a write after a read while another writer committed
            time.sleep(0.01)
    raise AssertionError("the catalog stayed busy")


def test_a_record_and_an_abandon_at_the_same_moment_never_both_win(catalog_url: str) -> None:
    """Two workers, two engines, the same point id at the same instant: either the point is
    recorded and the abandon keeps it, or it is abandoned and the record is refused."""
    recorder, abandoner = Catalog(catalog_url), Catalog(catalog_url, upgrade=False)
    seed(recorder)
    try:
        for i in range(30):
            p, start, outcome = point(f"race{i}", i), threading.Barrier(2), {}

            def record() -> None:
                start.wait()
                try:
                    until_answered(lambda: recorder.add_restore_point(p))
                    outcome["recorded"] = True
                except StateConflict:
                    outcome["recorded"] = False

            def abandon() -> None:
                start.wait()
                outcome["abandoned"] = until_answered(lambda: abandoner.abandon_point(p))

            threads = [threading.Thread(target=record), threading.Thread(target=abandon)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert outcome["recorded"] != outcome["abandoned"], (i, outcome)
            assert (p.id in {q.id for q in recorder.list_restore_points(plan="gold")}) == outcome["recorded"]
    finally:
        recorder.close()
        abandoner.close()


def test_a_snapshot_two_points_name_is_known_to_be_shared(catalog: Catalog) -> None:
    """Between a backup's record and its hand-over the new point and its base name one
    snapshot: deleting either must not delete it (activities/backup.py)."""
    seed(catalog)
    for i, snap in enumerate(["s1", "s1", None]):
        p = RestorePointSummary(id=f"p{i}", plan="gold", cluster="c1", vm="web", repository="repo1",
                                type=PointType.FULL, creation=PointCreation.AUTO, created_at=T0 + timedelta(hours=i))
        catalog.add_restore_point(p, snapshot_id=snap)
    assert catalog.snapshot_users("p0") == ["p1"] and catalog.snapshot_users("p1") == ["p0"]
    assert catalog.snapshot_users("p2") == []
    catalog.release_point_snapshot("p0")  # the hand-over
    assert catalog.snapshot_users("p1") == [] and catalog.snapshot_users("p0") == []


def test_inventory_cache(catalog: Catalog) -> None:
    seed(catalog)
    vm = VM(id="vm-1", cluster="c1", config=VMConfig(name="web"))
    catalog.cache_vms("c1", [vm])
    catalog.cache_vms("c1", [vm])
    assert catalog.cached_vms("c1") == [vm]


def test_jobs(catalog: Catalog) -> None:
    catalog.record_job("backup/gold/1", "r1", "backup_plan", "RUNNING", plan="gold")
    catalog.record_job("backup/gold/1", "r1", "backup_plan", "SUCCESS", plan="gold", result={"vms": 2}, finished=True)
    [job] = catalog.list_jobs(plan="gold")
    assert (job.status, job.result, job.finished_at is not None) == ("SUCCESS", {"vms": 2}, True)
