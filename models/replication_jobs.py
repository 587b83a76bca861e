"""Inputs and results of the replication and disaster-recovery workflows and activities."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from models.inventory import Consistency, Name, ShutdownMode, Strict, VMConfig
from models.plan_pages import MAX_PAGE_SIZE, RunPage, RunSummary
from models.plans import RunResult, VMRef
from models.replication import ReplicaState, ReplicationObject, ReplicationPlanSpec, StateChange
from models.restore_points import PointCreation, PointType
from models.services import TransferKind


class ReplicationTickInput(Strict):
    plan: Name


class ReplicationRunInput(Strict):
    plan: Name
    manual: bool = False
    scheduled_at: datetime | None = None
    page_size: int | None = Field(default=None, ge=1, le=MAX_PAGE_SIZE, description="VMs per workflow run before it continues "
                                  "as new (default models.plan_pages.DEFAULT_PAGE_SIZE, at most MAX_PAGE_SIZE).")
    page: RunPage | None = Field(default=None, description="Set by the run itself when it continues as new.")


class ResolvedReplicationPlan(Strict):
    spec: ReplicationPlanSpec
    objects: list[ReplicationObject]
    paused: bool
    max_jobs: int = Field(ge=1)
    bandwidth_mbps: int | None = None
    max_retries: int = 3
    retry_interval_s: int = 30
    object_count: int | None = Field(default=None, description="Set when only a page was read: `objects` "
                                     "(and `spec.vms`) hold that page, this counts the plan's VMs.")


class ReplicateInput(Strict):
    spec: ReplicationPlanSpec
    vm: Name
    point_id: str
    creation: PointCreation = PointCreation.AUTO
    bandwidth_mbps: int | None = None
    max_retries: int = 3
    retry_interval_s: int = 30
    claimed_by: str | None = Field(default=None, description="Run under this operation's claim of the replica "
                                   "(a failover's final sync) instead of taking one.")


class ReplicateResult(Strict):
    vm: VMRef
    ok: bool
    point_id: str | None = None
    seeded: bool = False
    moved_bytes: int = 0
    wire_bytes: int = 0
    disk_bytes: int = 0
    error: str = ""


class ReplicaCheckVM(Strict):
    """One VM of a page's no-change check: its index in the page."""

    index: int = Field(ge=0)
    vm: Name


class ReplicaCheckInput(Strict):
    """A page's VMs of a replication plan, checked on the source site for no change since
    their replica's base snapshot (ids only: a page is <= 500 VMs)."""

    plan: Name
    consistency: Consistency
    vms: list[ReplicaCheckVM] = Field(max_length=MAX_PAGE_SIZE)


class UnchangedSource(Strict):
    index: int
    source_snapshot: str = Field(description="The base snapshot the source is unchanged since.")


class ReplicaCheckResult(Strict):
    """The VMs whose source is as their base snapshot holds it; the others get children."""

    unchanged: list[UnchangedSource] = Field(default_factory=list)


class ReplicaCarryVM(Strict):
    """One unchanged VM of a page's replica batch, with the ids its Replicate child would have."""

    index: int = Field(ge=0)
    vm: Name
    point_id: str
    owner: str = Field(description="The claim's owner: the VM's Replicate child's workflow id.")
    source_snapshot: str


class ReplicaCarryInput(Strict):
    """A page's unchanged VMs given their replica point on the target site in one activity."""

    plan: Name
    creation: PointCreation
    consistency: Consistency
    deadline: datetime | None = Field(default=None, description="The window's end: no VM starts after it.")
    vms: list[ReplicaCarryVM] = Field(max_length=MAX_PAGE_SIZE)


class CarriedReplica(Strict):
    index: int
    point_id: str
    disk_bytes: int = 0


class ReplicaCarryResult(Strict):
    """The VMs that got their replica point; every other VM of the batch gets a child workflow."""

    carried: list[CarriedReplica] = Field(default_factory=list)


class ReplicationRunResult(RunSummary):
    plan: Name
    result: RunResult
    skipped_reason: str = ""
    vms: list[ReplicateResult] = Field(default_factory=list)


class ObjectRef(Strict):
    plan: str
    vm: str


class ResolvedObject(Strict):
    spec: ReplicationPlanSpec
    obj: ReplicationObject
    bandwidth_mbps: int | None = None
    failback_bandwidth_mbps: int | None = None


class PointQuery(Strict):
    plan: str
    vm: str
    point: str


class ReplicaPoint(Strict):
    point_id: str
    snapshot_id: str


# -- activities ----------------------------------------------------------------------------

class VMAt(Strict):
    """A VM (by id) on a cluster, optionally at a snapshot."""

    cluster: Name
    vm_id: str
    snapshot_id: str | None = None


class EnsureReplicaInput(Strict):
    spec: ReplicationPlanSpec
    replica: VMRef
    source_config: VMConfig
    known_vm_id: str | None = Field(default=None, description="The replica the object already tracks.")


class PullInput(Strict):
    """Copy extents of a remote site's VM snapshot into a local VM.

    Extents: those changed on the remote between `remote_base` and the snapshot (all
    allocated ones when there is no base), plus those changed on the local VM since
    `local_base` (so the local copy loses whatever it did on its own)."""

    remote_site: Name
    remote: VMAt
    remote_base: str | None = None
    local: VMAt
    local_base: str | None = None
    bandwidth_mbps: int | None = None
    kind: TransferKind = Field(default=TransferKind.REPLICATION, description="Whose limit the pull counts "
                               "against on the local site's replication service: replication or failback.")
    compression: bool = Field(default=True, description="zstd on the transport (the plan's compression).")


class PullResult(Strict):
    moved_bytes: int
    wire_bytes: int
    disk_bytes: int
    extents: int


class PullProgress(Strict):
    disk_index: int = 0
    batch_index: int = 0
    moved_bytes: int = 0


class SnapshotDrop(Strict):
    at: VMAt


class Claim(StrEnum):
    """What a change does with the replica's claim (see ReplicationObject.owner)."""

    TAKE = "take"  # the replica must be unclaimed (or already ours); it becomes ours
    HOLD = "hold"  # the replica must be claimed by us and stays so
    RELEASE = "release"  # the replica must be claimed by us; it becomes unclaimed


class ObjectChange(Strict):
    """A compare-and-set change of a replication object, applied in one catalog transaction:
    the object must be in one of `expect` (when given) and its claim must allow `claim`;
    then it moves `to` (validated by the state machine) and/or gets new refs. `change_id`
    makes a retried activity apply the change once."""

    plan: Name
    vm: Name
    to: ReplicaState | None = None
    reason: str = ""
    at: datetime
    updates: dict[str, str | None] = Field(default_factory=dict)
    last_point_at: datetime | None = None
    expect: list[ReplicaState] | None = None
    owner: str | None = None
    claim: Claim | None = None
    change_id: str | None = None


class HistoryQuery(Strict):
    plan: Name
    vm: Name
    limit: int = Field(default=50, ge=1, le=1000)
    before: int | None = Field(default=None, description="Page: entries older than this sequence number.")


class HistoryPage(Strict):
    entries: list[StateChange]
    total: int
    next_before: int | None = None


class ReplicaPointRecord(Strict):
    plan: Name
    replica: VMRef
    point_id: str
    snapshot_id: str
    creation: PointCreation
    created_at: datetime
    config: VMConfig
    logical_bytes: int = 0
    stored_bytes: int = 0
    type: PointType = PointType.INCREMENTAL  # FULL: a seed (every byte moved, no base)


class ReplicaRetentionInput(Strict):
    plan: Name
    replica: VMRef
    replica_vm_id: str
    keep_snapshot: str | None = None


class ShutdownInput(Strict):
    at: VMAt
    mode: ShutdownMode
    timeout_s: int


class PowerStateReply(Strict):
    state: str
    reachable: bool = True
    stopped: bool = False  # a shutdown's answer: this call stopped a VM that was running
    detail: str | None = None  # not reachable although the site answered: its cluster's manager (AOC) did not


class DrOperationResult(Strict):
    operation: str
    plan: Name
    vm: Name
    state: ReplicaState
    point_id: str | None = None
    moved_bytes: int = 0
    disk_bytes: int = 0
    details: dict = Field(default_factory=dict)


class CloneInput(Strict):
    """A copy of a VM at a snapshot, every NIC on `network` (a failover test's isolated net)."""

    source: VMAt
    name: Name
    network: Name
