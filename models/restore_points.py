"""Restore points as the catalog and the interfaces show them (the repository's manifest is
the source of truth for their contents)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from models.inventory import Name, Strict


class PointType(StrEnum):
    FULL = "FULL"
    INCREMENTAL = "INCREMENTAL"


class PointCreation(StrEnum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"
    FAILOVER = "FAILOVER"
    FAILOVER_TEST = "FAILOVER_TEST"
    FAILBACK = "FAILBACK"


class PointState(StrEnum):
    CREATING = "CREATING"
    READY = "READY"
    DAMAGED = "DAMAGED"
    DELETING = "DELETING"


def unrestorable(point_id: str, state: PointState) -> str | None:
    """Why a point in `state` cannot be restored (None: it can): checked before a restore
    creates or stops anything, by the client and again by the workflow."""
    if state == PointState.DAMAGED:
        return (f"restore point {point_id!r} is DAMAGED (repository verify found its data failing checks): "
                "nothing was restored; choose another point, or back up again to heal it")
    if state != PointState.READY:
        return f"restore point {point_id!r} is {state.value}, not READY: nothing was restored"
    return None


class RestorePointSummary(Strict):
    id: str
    plan: Name | None
    cluster: Name
    vm: Name
    type: PointType
    creation: PointCreation
    state: PointState = PointState.READY
    created_at: datetime
    repository: Name | None = None
    logical_bytes: int = 0
    stored_bytes: int = 0
