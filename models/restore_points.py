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
