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


class RepositoryCreate(RepositorySpec):
    """`abdr repository create`: a repository spec plus how to encrypt a new one. The key
    itself never travels: `key_file` is the path of a key file as the site's worker sees it."""

    encrypt: bool = False
    key_file: str | None = Field(default=None, min_length=1, max_length=4096,
                                 description="Absolute path of an existing key file on the site's worker.")

    @field_validator("key_file")
    @classmethod
    def _absolute_key(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("/"):
            raise ValueError(f"key file {v!r} must be an absolute path (as the site's worker sees it)")
        return v


class RepositoryKey(Strict):
    """An encrypted repository's key, by path on its site's worker (`POST /v1/repositories/{name}/key`)."""

    key_file: str = Field(min_length=2, max_length=4096, pattern="^/",
                          description="Absolute path of the key file, as the site's worker sees it.")


class RepositoryKeyFile(RepositoryKey):
    """Give a site's worker the key of an encrypted repository (by path, never by content)."""

    name: Name


class RepositoryFindingsQuery(Strict):
    """A page of the last verify's findings of a repository."""

    name: Name
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=1000)


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
