"""Retention of restore points: the policy model and the pure selection of expired points.

Only automatic (AUTO) points are subject to retention; MANUAL, FAILOVER, FAILOVER_TEST and
FAILBACK points are kept until deleted by hand (ABDR's rule). Because every point in the
repository is independently restorable, a point is expired on its own: there is no
"chain" to keep alive (as in PBS, unlike ABDR's chained backup files).

Deterministic and I/O-free, so workflows may call `expired_points` too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Iterable, Protocol

from pydantic import model_validator

from models.inventory import Strict
from models.restore_points import PointCreation

# Ranges: ABDR does not publish hard limits; these bound typos (COUNT 100000) while
# allowing a decade of dailies (TIME) or a year of hourlies (COUNT).
COUNT_MAX = 10_000
TIME_MAX_DAYS = 3_650


class RetentionKind(StrEnum):
    COUNT = "COUNT"  # keep the newest N automatic points per VM
    TIME = "TIME"  # keep automatic points younger than N days
    FOREVER = "FOREVER"  # keep everything


class Retention(Strict):
    kind: RetentionKind
    value: int | None = None

    @model_validator(mode="after")
    def _check_value(self) -> "Retention":
        v = self.value
        if self.kind is RetentionKind.FOREVER:
            if v is not None:
                raise ValueError(f"retention FOREVER takes no value (got {v})")
        elif self.kind is RetentionKind.COUNT:
            if v is None or not 1 <= v <= COUNT_MAX:
                raise ValueError(
                    f"retention COUNT needs a number of restore points from 1 to {COUNT_MAX} (got {v})"
                )
        elif v is None or not 1 <= v <= TIME_MAX_DAYS:
            raise ValueError(f"retention TIME needs a number of days from 1 to {TIME_MAX_DAYS} (got {v})")
        return self

    @classmethod
    def count(cls, n: int) -> "Retention":
        return cls(kind=RetentionKind.COUNT, value=n)

    @classmethod
    def days(cls, n: int) -> "Retention":
        return cls(kind=RetentionKind.TIME, value=n)

    @classmethod
    def forever(cls) -> "Retention":
        return cls(kind=RetentionKind.FOREVER)

    def describe(self) -> str:
        if self.kind is RetentionKind.COUNT:
            return f"keep the last {self.value} automatic restore points per VM"
        if self.kind is RetentionKind.TIME:
            return f"keep automatic restore points for {self.value} days"
        return "keep restore points forever"


class RetainablePoint(Protocol):
    """What retention needs to know of a point (a manifest, a catalog row, a summary)."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def creation(self) -> PointCreation | str: ...


def _vm_key(p: object) -> str:
    # Manifests carry vm_id; the catalog's summary carries cluster + vm name.
    vm_id = getattr(p, "vm_id", None)
    if vm_id is not None:
        return str(vm_id)
    return f"{getattr(p, 'cluster', '')}/{getattr(p, 'vm', '')}"


def expired_points(
    points: Iterable[RetainablePoint], retention: Retention, now: datetime
) -> list[str]:
    """Ids of the points `retention` lets go at `now`, oldest first.

    COUNT keeps the newest N AUTO points of each VM (grouped by `vm_id`, or by
    `cluster`/`vm` for catalog summaries); TIME expires AUTO points whose age is N days or
    more; FOREVER expires nothing. Non-AUTO points are never returned. `now` and the
    points' `created_at` must both be timezone-aware or both naive.
    """
    auto = [p for p in points if PointCreation(p.creation) is PointCreation.AUTO]
    if retention.kind is RetentionKind.FOREVER:
        return []
    expired: list[RetainablePoint] = []
    if retention.kind is RetentionKind.TIME:
        limit = now - timedelta(days=retention.value or 0)
        expired = [p for p in auto if p.created_at <= limit]
    else:
        by_vm: dict[str, list[RetainablePoint]] = defaultdict(list)
        for p in auto:
            by_vm[_vm_key(p)].append(p)
        for pts in by_vm.values():
            # Newest first; id breaks ties so the choice is deterministic.
            pts.sort(key=lambda p: (p.created_at, p.id), reverse=True)
            expired.extend(pts[retention.value or 0 :])
    expired.sort(key=lambda p: (p.created_at, p.id))
    return [p.id for p in expired]


class ExpiredPoints(Strict):
    """What a retention pass let go: the count and the first few ids (a retention cut from
    thousands of points to a few must not become a payload of thousands of ids)."""

    count: int
    first: list[str]

    @model_validator(mode="before")
    @classmethod
    def _from_id_list(cls, data: Any) -> Any:
        # Retention passes recorded before this model returned every id; replaying their
        # histories decodes those results as this.
        return cls.of(data).model_dump() if isinstance(data, list) else data

    @classmethod
    def of(cls, ids: list[str], keep: int = 20) -> "ExpiredPoints":
        return cls(count=len(ids), first=ids[:keep])
