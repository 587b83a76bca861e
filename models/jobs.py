"""Inputs and results of the backup, restore and maintenance workflows and their
activities: one pydantic model per call. They carry ids, extents and digests, never data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from models.inventory import Consistency, Name, Strict, VMConfig
from models.plan_pages import MAX_PAGE_SIZE, RunPage, RunSummary
from models.plans import BackupDelayOption, RunResult, VMRef
from models.replication import NetworkMapping
from models.requests import RestoreRequest
from models.restore_points import PointCreation, PointType
from models.retention import Retention
from models.schedule import Window


class Operation(StrEnum):
    """Values of the AbdrOperation search attribute."""

    BACKUP_PLAN = "backup_plan"
    BACKUP = "backup"
    RESTORE = "restore"
    MAINTENANCE = "maintenance"
    REPLICATION_PLAN = "replication_plan"
    REPLICATION = "replication"
    FAILOVER = "failover"
    FAILOVER_TEST = "failover_test"
    FAILBACK = "failback"
    PERMANENT_FAILOVER = "permanent_failover"


# -- plan runs -------------------------------------------------------------------------

class PlanTickInput(Strict):
    """What a plan's Temporal Schedule starts: it decides full vs incremental and starts the
    plan run under the plan's one workflow id (so runs of one plan never overlap)."""

    plan: Name


class PlanRunInput(Strict):
    plan: Name
    manual: bool = False
    full: bool = False
    scheduled_at: datetime | None = None
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE_SIZE, description="VMs per workflow run before it continues "
                                  "as new (default models.plan_pages.DEFAULT_PAGE_SIZE, at most MAX_PAGE_SIZE).")
    page: RunPage | None = Field(default=None, description="Set by the run itself when it continues as new.")


class ResolvedVM(Strict):
    ref: VMRef
    site: Name
    vm_id: str | None = None
    error: str = ""


class ResolvedPlan(Strict):
    """A plan as a run needs it, read from the catalog once at the run's start."""

    plan: Name
    repository: Name
    repository_path: str
    repository_site: Name
    vms: list[ResolvedVM]
    window: Window | None
    time_zone: str
    delay_option: BackupDelayOption
    retention: Retention
    consistency: Consistency
    compression: bool
    max_parallel: int = Field(ge=1)
    read_iops: int | None = None
    max_retries: int = Field(ge=0)
    retry_interval_s: int = Field(ge=1)
    full_due: bool = False
    paused: bool = False
    vm_count: int | None = Field(default=None, description="The plan's VMs when `vms` is a page of them "
                                 "(the input's page_size); None: `vms` is all of them.")


class VMBackupInput(Strict):
    plan: Name
    vm: ResolvedVM
    repository: Name
    repository_path: str
    point_id: str
    creation: PointCreation
    force_full: bool = False
    full_reason: str = ""
    consistency: Consistency = Consistency.CRASH_CONSISTENT
    compression: bool = True
    retention: Retention | None = None
    read_iops: int | None = None
    max_retries: int = 3
    retry_interval_s: int = 30


class DiskTransferStats(Strict):
    disk: Name
    size: int
    read_bytes: int = 0
    new_bytes: int = 0
    new_chunks: int = 0
    reused_chunks: int = 0
    zero_chunks: int = 0
    carried_chunks: int = 0
    resumed_chunks: int = Field(default=0, description="Chunks an earlier attempt had confirmed: not re-read.")


class VMBackupResult(Strict):
    vm: VMRef
    ok: bool
    point_id: str | None = None
    type: PointType | None = None
    full_reason: str = ""
    disks: list[DiskTransferStats] = Field(default_factory=list)
    error: str = ""
    cancelled: bool = False


class PlanRunResult(RunSummary):
    plan: Name
    result: RunResult
    skipped_reason: str = ""
    vms: list[VMBackupResult] = Field(default_factory=list)


# -- backup activities -------------------------------------------------------------------

class BackupBase(Strict):
    """What a VM's next backup can build on: the newest point with a kept snapshot."""

    point_id: str | None = None
    snapshot_id: str | None = None


class SnapshotRef(Strict):
    cluster: Name
    vm_id: str
    snapshot_id: str
    config: VMConfig


class PrepareBackupInput(Strict):
    plan: Name
    vm: VMRef
    force_full: bool
    full_reason: str
    consistency: Consistency | None = None  # set: a base snapshot of this consistency may stand for the new point


class PrepareBackupResult(Strict):
    vm_id: str
    type: PointType
    reason: str
    base: BackupBase = Field(default_factory=BackupBase)
    unchanged: SnapshotRef | None = Field(default=None, description="The base snapshot, when the driver tells "
                                          "that neither the VM's disks nor its config changed since it: the new "
                                          "point is made from it, with no new snapshot.")


class SnapshotInput(Strict):
    cluster: Name
    vm_id: str
    name: str
    consistency: Consistency


class TransferInput(Strict):
    plan: Name
    point_id: str
    repository_path: str
    snapshot: SnapshotRef
    type: PointType
    creation: PointCreation
    base: BackupBase = Field(default_factory=BackupBase)
    compression: bool = True
    created_at: datetime
    read_iops: int | None = None


class TransferProgress(Strict):
    """Heartbeat details of a transfer: resume after the last confirmed unit."""

    disk_index: int = 0
    chunk_index: int = 0
    bytes_done: int = 0
    bytes_total: int = 0


class TransferResult(Strict):
    point_id: str
    disks: list[DiskTransferStats]
    logical_bytes: int
    stored_bytes: int


class RecordPointInput(Strict):
    plan: Name | None
    vm: VMRef
    vm_config: VMConfig
    repository: Name
    point_id: str
    type: PointType
    creation: PointCreation
    created_at: datetime
    snapshot_id: str | None
    base_point_id: str | None
    logical_bytes: int
    stored_bytes: int


class CleanupInput(Strict):
    cluster: Name
    vm_id: str
    snapshot_id: str | None
    repository_path: str
    point_id: str


class RetentionInput(Strict):
    plan: Name
    vm: VMRef
    repository: Name
    repository_path: str
    retention: Retention


class FinishBackupInput(Strict):
    """A backup's end in one site call: record the point, release the old base, apply retention."""

    record: RecordPointInput
    release: CleanupInput | None = None
    retention: RetentionInput | None = None
    hand_over: str | None = Field(default=None, description="The base point whose snapshot the new point now "
                                  "holds (an unchanged VM's point, made from it): only its catalog link goes.")


class AbandonBackupInput(Strict):
    """A backup whose end (finish_backup) failed: the point to abandon unless the catalog
    recorded it, and what to delete then (`cleanup.snapshot_id` None: a carried base, kept)."""

    record: RecordPointInput
    cleanup: CleanupInput


class CarryVM(Strict):
    """One VM of a page's no-change batch: its index in the page and the point id it gets."""

    index: int = Field(ge=0)
    vm: VMRef
    point_id: str


class CarryBatchInput(Strict):
    """A page's VMs of one site, checked for no change and, where unchanged, given their
    point from the base snapshot in one site activity (ids only: a page is <= 500 VMs)."""

    plan: Name
    repository: Name
    repository_path: str
    creation: PointCreation
    consistency: Consistency
    compression: bool = True
    retention: Retention | None = None
    created_at: datetime
    deadline: datetime | None = Field(default=None, description="The window's end: no VM starts after it.")
    vms: list[CarryVM] = Field(max_length=MAX_PAGE_SIZE)


class CarriedVM(Strict):
    index: int
    point_id: str
    reason: str
    disks: list[DiskTransferStats] = Field(default_factory=list)


class CarryBatchResult(Strict):
    """The VMs that got their point; every other VM of the batch gets a child workflow."""

    carried: list[CarriedVM] = Field(default_factory=list)


class CarryProgress(Strict):
    """Heartbeat details of a batch: the first `vms_done` VMs are recorded or left to a child."""

    vms_done: int = 0


class PlanResultInput(Strict):
    plan: Name
    result: RunResult
    at: datetime


class JobEnd(StrEnum):
    """How a run ended, as Temporal recorded it: the status a job row takes when its workflow
    could not write its own end (it failed, was cancelled, terminated or timed out)."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TERMINATED = "TERMINATED"
    TIMED_OUT = "TIMED_OUT"
    CONTINUED_AS_NEW = "CONTINUED_AS_NEW"


class JobRecord(Strict):
    workflow_id: str
    run_id: str
    operation: Operation
    status: str
    plan: str | None = None
    vm: str | None = None
    result: dict | None = None
    finished: bool = False


# -- restore ---------------------------------------------------------------------------

class RestoreInput(Strict):
    request: RestoreRequest


class ResolvedRestore(Strict):
    point_id: str
    repository_path: str
    source: VMRef
    target: VMRef
    site: Name
    config: VMConfig
    base: BackupBase = Field(default_factory=BackupBase, description="INPLACE: the VM's CBT base.")
    write_iops: int | None = None


class RestoreDisksInput(Strict):
    restore: ResolvedRestore
    vm_id: str
    new_vm: bool


class RestoreDisksResult(Strict):
    written_bytes: int
    total_bytes: int
    resumed_bytes: int = 0  # confirmed by an earlier attempt: not written again


class CreateVMInput(Strict):
    cluster: Name
    config: VMConfig
    network_mapping: list[NetworkMapping] = Field(default_factory=list)


class PowerInput(Strict):
    cluster: Name
    vm_id: str
    on: bool


class RestoreResult(Strict):
    point_id: str
    vm: VMRef
    vm_id: str
    written_bytes: int
    total_bytes: int
    powered_on: bool


# -- maintenance -------------------------------------------------------------------------

class MaintenanceInput(Strict):
    repository: Name
    verify: bool = True
    prune: bool = True
    gc: bool = True
    read_iops: int | None = Field(default=None, ge=1, description="Cap on verify's and GC's I/O (64 KiB units), "
                                  "so maintenance leaves the repository's disks to running backups.")


FINDINGS_SAMPLE = 20  # findings a MaintenanceResult carries; the rest page from the repository


class MaintenanceResult(Strict):
    """Counts plus a bounded sample: a verify that finds a million damaged ranges returns a
    few KiB. The full report is the repository's `verify/last.jsonl` (`abdr repository
    findings NAME` pages through it) and damaged points are DAMAGED in the catalog."""

    repository: Name
    verified_points: int = 0
    # No max_length: results recorded before the sample existed must still decode on replay;
    # the activity bounds both lists to FINDINGS_SAMPLE.
    damaged: list[dict] = Field(default_factory=list,
                                description="The first findings (missing/unreadable/unknown manifests "
                                            "first, then damaged ranges).")
    pruned_points: list[str] = Field(default_factory=list, description="The first pruned point ids.")
    gc_removed_chunks: int = 0
    gc_removed_bytes: int = 0
    findings: int = 0  # every finding of the verify, `damaged` is the first of them
    counts: dict[str, int] = Field(default_factory=dict)  # verify's counts by kind (verify.report_counts)
    damaged_points: list[str] = Field(default_factory=list,
                                      description="The first points marked DAMAGED in the catalog.")
    healed_points: int = 0  # DAMAGED points found whole again (their chunks stored anew): READY
    pruned_count: int = 0
