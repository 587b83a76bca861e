"""Retention: validation messages and the pure selection of expired points."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from models.restore_points import PointCreation
from models.retention import COUNT_MAX, TIME_MAX_DAYS, Retention, RetentionKind, expired_points

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


class P(BaseModel):
    id: str
    vm_id: str
    created_at: datetime
    creation: PointCreation = PointCreation.AUTO


def pts(vm: str, ages_hours: list[float], creation: PointCreation = PointCreation.AUTO) -> list[P]:
    return [P(id=f"{vm}-{h}", vm_id=vm, created_at=NOW - timedelta(hours=h), creation=creation) for h in ages_hours]


def test_validation_messages() -> None:
    with pytest.raises(ValidationError, match="FOREVER takes no value"):
        Retention(kind=RetentionKind.FOREVER, value=3)
    with pytest.raises(ValidationError, match=f"COUNT needs a number of restore points from 1 to {COUNT_MAX}"):
        Retention(kind=RetentionKind.COUNT, value=0)
    with pytest.raises(ValidationError, match=r"COUNT needs .* \(got None\)"):
        Retention(kind=RetentionKind.COUNT)
    with pytest.raises(ValidationError, match=f"TIME needs a number of days from 1 to {TIME_MAX_DAYS}"):
        Retention(kind=RetentionKind.TIME, value=TIME_MAX_DAYS + 1)
    with pytest.raises(ValidationError, match="extra"):
        Retention.model_validate({"kind": "COUNT", "value": 1, "bogus": 1})
    assert Retention.model_validate({"kind": "TIME", "value": 7}) == Retention.days(7)
    assert Retention.count(3).describe() == "keep the last 3 automatic restore points per VM"


def test_count_keeps_newest_n_auto_per_vm() -> None:
    points = pts("a", [1, 5, 3, 10, 7]) + pts("b", [2, 4])
    assert expired_points(points, Retention.count(2), NOW) == ["a-10", "a-7", "a-5"]
    assert expired_points(points, Retention.count(5), NOW) == []


def test_manual_and_replication_points_are_never_expired() -> None:
    points = (pts("a", [1, 2]) + pts("a", [100, 200], PointCreation.MANUAL)
              + pts("a", [300], PointCreation.FAILOVER) + pts("a", [400], PointCreation.FAILOVER_TEST)
              + pts("a", [500], PointCreation.FAILBACK))
    assert expired_points(points, Retention.count(1), NOW) == ["a-2"]
    assert expired_points(points, Retention.days(1), NOW) == []
    # Manual points do not count towards COUNT either: the 1 kept is the newest automatic.
    assert "a-1" not in expired_points(points, Retention.count(1), NOW)


def test_time_keeps_points_younger_than_n_days() -> None:
    points = pts("a", [1, 23.9, 24, 24.1, 24 * 30])
    assert expired_points(points, Retention.days(1), NOW) == ["a-720", "a-24.1", "a-24"]
    assert expired_points(points, Retention.days(31), NOW) == []


def test_forever_keeps_everything() -> None:
    assert expired_points(pts("a", [1, 10_000]), Retention.forever(), NOW) == []


def test_catalog_summaries_group_by_cluster_and_vm() -> None:
    class S(BaseModel):
        id: str
        cluster: str
        vm: str
        created_at: datetime
        creation: str

    rows = [S(id=f"{c}{k}", cluster=c, vm="web", created_at=NOW - timedelta(hours=k), creation="AUTO")
            for c in ("c1", "c2") for k in range(3)]
    assert expired_points(rows, Retention.count(2), NOW) == ["c12", "c22"]
