"""The catalog's tables (sqlmodel). Only activities and the CLI/API read and write them;
never sent as Temporal payloads (send the plain pydantic models instead). Specs are kept
as JSON of their pydantic model so the validated model is the single source of truth;
columns exist for what is filtered or joined on."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored as UTC and always read back tz-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the catalog; use UTC-aware datetimes")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def _ts(nullable: bool) -> Any:
    """A tz-aware timestamp column; non-nullable ones default to now (UTC)."""
    column: Column[datetime] = Column(UTCDateTime(), nullable=nullable)
    return Field(default=None, sa_column=column) if nullable else Field(default_factory=utcnow, sa_column=column)


class SiteRow(SQLModel, table=True):
    __tablename__ = "sites"
    name: str = Field(primary_key=True, max_length=63)
    description: str = ""
    transport_url: str = Field(default="", description="Where this site's worker serves snapshot reads.")


class ClusterRow(SQLModel, table=True):
    __tablename__ = "clusters"
    name: str = Field(primary_key=True, max_length=63)
    site: str = Field(foreign_key="sites.name", index=True, max_length=63)
    driver: str = Field(max_length=16)
    endpoint: str = ""


class VMRow(SQLModel, table=True):
    """Inventory cache: what a driver last reported for a VM."""

    __tablename__ = "vms"
    cluster: str = Field(primary_key=True, foreign_key="clusters.name", max_length=63)
    name: str = Field(primary_key=True, max_length=63)
    vm_id: str = Field(index=True, max_length=128)
    power_state: str = Field(max_length=16)
    config: dict = Field(sa_column=Column(JSON, nullable=False))
    seen_at: datetime = _ts(nullable=False)


class RepositoryRow(SQLModel, table=True):
    __tablename__ = "repositories"
    name: str = Field(primary_key=True, max_length=63)
    kind: str = Field(max_length=8)
    path: str
    site: str = Field(max_length=63)
    description: str = ""
    created_at: datetime = _ts(nullable=False)


class BackupPlanRow(SQLModel, table=True):
    __tablename__ = "backup_plans"
    name: str = Field(primary_key=True, max_length=63)
    spec: dict = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="WORKING", max_length=16)
    last_result: str = Field(default="NEVER_EXECUTE", max_length=20)
    last_run_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class PlanVMRow(SQLModel, table=True):
    """The VMs of a plan (backup or replication), for 'which plans protect this VM'."""

    __tablename__ = "plan_vms"
    plan_kind: str = Field(primary_key=True, max_length=12)
    plan: str = Field(primary_key=True, max_length=63)
    cluster: str = Field(primary_key=True, max_length=63)
    vm: str = Field(primary_key=True, max_length=63)


class RestorePointRow(SQLModel, table=True):
    __tablename__ = "restore_points"
    __table_args__ = (Index("ix_restore_points_vm", "cluster", "vm", "created_at"),)
    id: str = Field(primary_key=True, max_length=128)
    plan: str | None = Field(default=None, index=True, max_length=63)
    cluster: str = Field(max_length=63)
    vm: str = Field(max_length=63)
    repository: str | None = Field(default=None, max_length=63)
    type: str = Field(max_length=12)
    creation: str = Field(max_length=16)
    state: str = Field(default="READY", max_length=12)
    created_at: datetime = _ts(nullable=False)
    logical_bytes: int = 0
    stored_bytes: int = 0
    base_id: str | None = Field(default=None, max_length=128)
    snapshot_id: str | None = Field(default=None, max_length=128)
    vm_config: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AbandonedPointRow(SQLModel, table=True):
    """A point id whose backup gave up after its transfer, before the catalog recorded it
    (`Catalog.abandon_point`): its files and snapshot are deleted, and the id can never be
    recorded afterwards, so a late record from a worker that lost touch with Temporal
    cannot name a point whose data is gone."""

    __tablename__ = "abandoned_points"
    id: str = Field(primary_key=True, max_length=128)
    abandoned_at: datetime = _ts(nullable=False)


class ServiceRow(SQLModel, table=True):
    """A site's backup or replication service and its limits (the model's JSON)."""

    __tablename__ = "services"
    kind: str = Field(primary_key=True, max_length=12)
    name: str = Field(primary_key=True, max_length=63)
    site: str = Field(max_length=63)
    spec: dict = Field(sa_column=Column(JSON, nullable=False))


class ReplicationPlanRow(SQLModel, table=True):
    __tablename__ = "replication_plans"
    name: str = Field(primary_key=True, max_length=63)
    spec: dict = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="WORKING", max_length=16)
    last_result: str = Field(default="NEVER_EXECUTE", max_length=20)
    last_run_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False)
    updated_at: datetime = _ts(nullable=False)


class ReplicationObjectRow(SQLModel, table=True):
    __tablename__ = "replication_objects"
    plan: str = Field(primary_key=True, foreign_key="replication_plans.name", max_length=63)
    source_cluster: str = Field(primary_key=True, max_length=63)
    source_vm: str = Field(primary_key=True, max_length=63)
    replica_cluster: str = Field(max_length=63)
    replica_vm: str = Field(max_length=63)
    state: str = Field(default="NOT_READY", max_length=20)
    # Compare-and-set: every change is `UPDATE ... WHERE version = <read version>`.
    version: int = Field(default=0)
    owner: str | None = Field(default=None, max_length=255)
    last_point_at: datetime | None = _ts(nullable=True)
    # The replication base pair: the source snapshot and the replica point equal to it.
    source_vm_id: str | None = Field(default=None, max_length=128)
    replica_vm_id: str | None = Field(default=None, max_length=128)
    source_snapshot: str | None = Field(default=None, max_length=128)
    replica_point: str | None = Field(default=None, max_length=128)
    failover_snapshot: str | None = Field(default=None, max_length=128)


class ReplicaChangeRow(SQLModel, table=True):
    """A replica's history, one row per state change or claim; read a page at a time.
    `change_id` (unique) makes a retried change apply once."""

    __tablename__ = "replica_changes"
    __table_args__ = (Index("ix_replica_changes_object", "plan", "source_cluster", "source_vm", "seq"),)
    seq: int | None = Field(default=None, primary_key=True)
    plan: str = Field(max_length=63)
    source_cluster: str = Field(max_length=63)
    source_vm: str = Field(max_length=63)
    from_state: str = Field(max_length=20)
    to_state: str = Field(max_length=20)
    at: datetime = _ts(nullable=False)
    reason: str = Field(default="", max_length=1024)
    owner: str | None = Field(default=None, max_length=255)
    change_id: str | None = Field(default=None, max_length=255, unique=True)


class JobRow(SQLModel, table=True):
    """One run of an operation, linked to its Temporal workflow."""

    __tablename__ = "jobs"
    workflow_id: str = Field(primary_key=True, max_length=255)
    run_id: str = Field(primary_key=True, max_length=64)
    operation: str = Field(index=True, max_length=32)
    plan: str | None = Field(default=None, index=True, max_length=63)
    vm: str | None = Field(default=None, max_length=63)
    status: str = Field(max_length=20)
    started_at: datetime = _ts(nullable=False)
    finished_at: datetime | None = _ts(nullable=True)
    result: dict = Field(sa_column=Column(JSON, nullable=False))


class PlanRunVMRow(SQLModel, table=True):
    """One VM's result in one plan run (models/plan_pages.py): a run's results are read
    from here a page at a time, never carried whole in a Temporal payload. Keyed by the
    VM's position in the run, so a retried write replaces, never doubles."""

    __tablename__ = "plan_run_vms"
    workflow_id: str = Field(primary_key=True, max_length=255)
    run_id: str = Field(primary_key=True, max_length=64)
    index: int = Field(primary_key=True)
    plan: str = Field(max_length=63)
    vm: str = Field(max_length=127)
    ok: bool
    result: dict = Field(sa_column=Column(JSON, nullable=False))


class ServiceSlotRow(SQLModel, table=True):
    """A lease on one of a service's transfer slots (its limit per kind: backup, restore,
    replication, failback). `slot` runs 0..limit-1, so the primary key itself refuses a
    second holder of a slot (compare-and-set on SQLite and PostgreSQL alike); a lease
    whose holder stopped renewing it is reclaimable after `expires_at`."""

    __tablename__ = "service_slots"
    kind: str = Field(primary_key=True, max_length=16)
    service: str = Field(primary_key=True, max_length=63)
    slot: int = Field(primary_key=True)
    holder: str = Field(index=True, max_length=400, description="workflow id/run id/activity id")
    attempt: int = Field(default=1, description="The holder's activity attempt: a retry takes over, "
                         "and a stale attempt can no longer renew or release the lease.")
    acquired_at: datetime = _ts(nullable=False)
    expires_at: datetime = _ts(nullable=False)
