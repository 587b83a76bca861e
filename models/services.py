"""Backup and replication services and backup repositories: the things plans run on.

In abdr a *service* is a site's activity worker (its Temporal task queue); these models
carry its limits, which workflows and activities honour."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, field_validator

from models.inventory import Name, Strict


class RepositoryKind(StrEnum):
    """Where the chunk store lives. abdr mounts nothing itself: NFS/iSCSI volumes are mounted
    by the host, and abdr is given the mounted path."""

    PATH = "PATH"
    NFS3 = "NFS3"
    NFS4 = "NFS4"
    ISCSI = "ISCSI"


class RepositorySpec(Strict):
    name: Name
    kind: RepositoryKind = RepositoryKind.PATH
    path: str = Field(min_length=1, description="Absolute path of the (mounted) repository.")
    site: Name = "default"
    description: str = ""

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError(f"path {v!r} must be absolute")
        return v


class ServiceLimits(Strict):
    max_retries: int = Field(default=3, ge=0, le=100)
    retry_interval_s: int = Field(default=30, ge=1, le=3600)


class BackupService(ServiceLimits):
    """A site's backup service: the activity worker of that site and its limits."""

    name: Name
    site: Name
    max_parallel_backups: int = Field(default=4, ge=1, le=256)
    max_parallel_restores: int = Field(default=2, ge=1, le=256)
    backup_read_iops: int | None = Field(default=None, ge=1)
    restore_write_iops: int | None = Field(default=None, ge=1)


class ReplicationService(ServiceLimits):
    """A site's replication service (source or target role depends on the plan)."""

    name: Name
    site: Name
    max_replication_jobs: int = Field(default=4, ge=1, le=256)
    max_failback_jobs: int = Field(default=2, ge=1, le=256)
    replication_bandwidth_mbps: int | None = Field(default=None, ge=1)
    failback_bandwidth_mbps: int | None = Field(default=None, ge=1)


class TransferKind(StrEnum):
    """What a service slot is held for: each kind has its own limit on its service."""

    BACKUP = "backup"
    RESTORE = "restore"
    REPLICATION = "replication"
    FAILBACK = "failback"


SLOT_LIMITS: dict[TransferKind, str] = {
    TransferKind.BACKUP: "max_parallel_backups",
    TransferKind.RESTORE: "max_parallel_restores",
    TransferKind.REPLICATION: "max_replication_jobs",
    TransferKind.FAILBACK: "max_failback_jobs",
}


def slot_limit(service: BackupService | ReplicationService, kind: TransferKind) -> int:
    """The service's limit on concurrent transfers of `kind` (across all plans and runs)."""
    return int(getattr(service, SLOT_LIMITS[kind]))


class SlotLease(Strict):
    """A held slot of a service, as the catalog lists it."""

    kind: TransferKind
    service: Name
    slot: int
    holder: str
    attempt: int
    acquired_at: datetime
    expires_at: datetime
