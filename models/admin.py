"""The closed list of administrative operations the `Admin` workflow runs, each with its
request and response model. Anyone who can reach Temporal can start a workflow, so this list
(not the set of activities a worker happens to register) decides what an `Admin` call may
do: the workflow refuses an unknown operation or a payload its model rejects before any
activity runs. `on_site` says where the activity lives: a site's queue (the call must name
the site) or the catalog's (it must not). The activity answers the response model; the
workflow passes its JSON through, and the client reads it back as `response` (so the REST
API's OpenAPI document describes what each route answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, NamedTuple, TypeVar

from pydantic import BaseModel, Field, ValidationError

from models.inventory import VM, Cluster, Name, Site, Strict, VMConfig, check_name
from models.plan_pages import RunVMPage, RunVMQuery
from models.plans import BackupPlanSpec, PlanStatus, RunResult, VMRef
from models.replication import ReplicationObject, ReplicationPlanSpec
from models.replication_jobs import HistoryPage, HistoryQuery
from models.requests import DiskExportRequest
from models.restore_points import RestorePointSummary
from models.services import (
    BackupService,
    ReplicationService,
    RepositoryCreate,
    RepositoryFindingsQuery,
    RepositoryKeyFile,
    RepositorySpec,
)


class NoArgs(Strict):
    pass


class ByName(Strict):
    name: Name


class SiteFilter(Strict):
    site: Name | None = None


class PlanFilter(Strict):
    plan: Name | None = None


class SetPlanStatus(Strict):
    name: Name
    status: PlanStatus


class PointFilter(Strict):
    plan: Name | None = None
    vm: VMRef | None = None


class PointId(Strict):
    id: str = Field(min_length=1, max_length=200)


class JobFilter(Strict):
    plan: Name | None = None
    limit: int = Field(default=50, ge=1, le=1000)


class ClusterName(Strict):
    cluster: Name


class VMList(Strict):
    vms: list[VMRef] = Field(max_length=10_000)


class PointIds(Strict):
    ids: list[str] = Field(min_length=1, max_length=10_000)


class VMOnCluster(Strict):
    """A VM by name on a cluster (its site's worker finds it)."""

    cluster: Name
    vm: Name


# An Admin call has 60 s (the client's ADMIN_TIMEOUT): a graceful stop must answer within it.
STOP_TIMEOUT_MAX_S = 45


class VMStop(VMOnCluster):
    force: bool = Field(default=False, description="Power off at once instead of asking the guest to shut down.")
    timeout_s: int = Field(default=30, ge=1, le=STOP_TIMEOUT_MAX_S,
                           description="How long the guest has to shut down (graceful stop).")


class DiskExport(VMOnCluster, DiskExportRequest):
    """An export (`DiskExportRequest`) of a VM on a cluster."""


class ExportedDisk(Strict):
    path: str
    size_bytes: int
    written_bytes: int = Field(description="Bytes written; the rest of the file is a hole (reads as zeros).")


class ReplicaRef(Strict):
    plan: Name
    vm: Name = Field(description="The protected (source) VM's name.")


# -- responses ------------------------------------------------------------------------------

SpecT = TypeVar("SpecT", BackupPlanSpec, ReplicationPlanSpec)


class PlanView(Strict, Generic[SpecT]):
    """A plan as the CLI and the API show it: its spec and its run state."""

    spec: SpecT
    status: PlanStatus
    last_result: RunResult
    last_run_at: datetime | None = None


class BackupPlanView(PlanView[BackupPlanSpec]):
    pass


class ReplicationPlanView(PlanView[ReplicationPlanSpec]):
    pass


class DeletedPlan(Strict):
    deleted: Name


class DeletedBackupPlan(DeletedPlan):
    points: list[str] = Field(default_factory=list, description="The plan's restore points.")
    points_deleted: bool = Field(default=False, description="Whether they were deleted too (`delete_points`).")


class RestorePointDetail(RestorePointSummary):
    vm_config: VMConfig


class Job(Strict):
    """One run of an operation, as the catalog records it."""

    workflow_id: str
    run_id: str
    operation: str
    plan: str | None = None
    vm: str | None = None
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    ui: str = Field(default="", description="The run in the Temporal Web UI (the client's link).")


class JobDescription(Strict):
    """A workflow run as Temporal describes it (what `GET /v1/jobs/{workflow_id}` follows)."""

    workflow_id: str
    run_id: str
    type: str
    status: str | None
    started_at: datetime
    ui: str
    closed_at: datetime | None = None
    result: Any = Field(default=None, description="A completed run's result: its workflow's result, as JSON.")
    progress: Any = Field(default=None, description="A running backup plan run's progress.")
    error: str = Field(default="", description="Why a run that did not complete ended (its failure's message).")


class ReplicaView(ReplicationObject):
    rpo_lag_s: float | None = Field(description="Seconds since the newest replica point (None: no point yet).")
    transitions: int = Field(description="Entries in the replica's history (`replica_history`).")


class CreatedRepository(RepositorySpec):
    key_file: str | None = Field(default=None, description="Encrypted: the key file on the site's worker.")
    key_id: str | None = None


class InstalledKey(Strict):
    name: Name
    key_file: str
    key_id: str


class FindingsPage(Strict):
    """A page of a repository's last verify findings (offset/limit through them)."""

    repository: Name
    counts: dict[str, Any] = Field(description="The verify's counts by kind.")
    total: int
    offset: int
    findings: list[dict[str, Any]]


class DeletedPoints(Strict):
    deleted: list[str]


class Services(Strict):
    """Sites' services and their limits: those configured, and each site's defaults where it
    has none configured (what its runs then use)."""

    backup: list[BackupService]
    replication: list[ReplicationService]


class AdminOp(NamedTuple):
    request: type[BaseModel]
    response: Any  # a model, or a list of one (the client reads the answer as this type)
    on_site: bool = False
    # A read of the catalog alone: safe to run as a local activity, which runs at least once
    # (a workflow task the server turns away runs it again). A creating or changing call
    # would answer a re-run with AlreadyExists or NotFound, so it stays a normal activity.
    reads: bool = False


ADMIN_OPS: dict[str, AdminOp] = {
    "add_site": AdminOp(Site, Site),
    "list_sites": AdminOp(NoArgs, list[Site], reads=True),
    "add_cluster": AdminOp(Cluster, Cluster),
    "list_clusters": AdminOp(SiteFilter, list[Cluster], reads=True),
    "put_backup_service": AdminOp(BackupService, BackupService),
    "put_replication_service": AdminOp(ReplicationService, ReplicationService),
    "list_services": AdminOp(SiteFilter, Services, reads=True),
    "list_repositories": AdminOp(NoArgs, list[RepositorySpec], reads=True),
    "add_backup_plan": AdminOp(BackupPlanSpec, BackupPlanSpec),
    "update_backup_plan": AdminOp(BackupPlanSpec, BackupPlanSpec),
    "get_backup_plan": AdminOp(ByName, BackupPlanView, reads=True),
    "list_backup_plans": AdminOp(NoArgs, list[BackupPlanView], reads=True),
    "set_backup_plan_status": AdminOp(SetPlanStatus, BackupPlanView),
    "delete_backup_plan": AdminOp(ByName, DeletedBackupPlan),
    "list_restore_points": AdminOp(PointFilter, list[RestorePointSummary], reads=True),
    "get_restore_point": AdminOp(PointId, RestorePointDetail, reads=True),
    "list_jobs": AdminOp(JobFilter, list[Job]),
    "list_run_vms": AdminOp(RunVMQuery, RunVMPage, reads=True),
    "add_replication_plan": AdminOp(ReplicationPlanSpec, ReplicationPlanSpec),
    "update_replication_plan": AdminOp(ReplicationPlanSpec, ReplicationPlanSpec),
    "get_replication_plan": AdminOp(ByName, ReplicationPlanView, reads=True),
    "list_replication_plans": AdminOp(NoArgs, list[ReplicationPlanView], reads=True),
    "set_replication_plan_status": AdminOp(SetPlanStatus, ReplicationPlanView),
    "delete_replication_plan": AdminOp(ByName, DeletedPlan),
    "list_replicas": AdminOp(PlanFilter, list[ReplicaView], reads=True),
    "get_replica": AdminOp(ReplicaRef, ReplicaView, reads=True),
    "replica_history": AdminOp(HistoryQuery, HistoryPage, reads=True),
    "list_replica_points": AdminOp(ReplicaRef, list[RestorePointSummary], reads=True),
    # On the site's worker: they need its disks, repositories or clusters.
    "create_repository": AdminOp(RepositoryCreate, CreatedRepository, on_site=True),
    "add_repository_key": AdminOp(RepositoryKeyFile, InstalledKey, on_site=True),
    "repository_findings": AdminOp(RepositoryFindingsQuery, FindingsPage, on_site=True),
    "list_vms": AdminOp(ClusterName, list[VM], on_site=True),
    "start_vm": AdminOp(VMOnCluster, VM, on_site=True),
    "stop_vm": AdminOp(VMStop, VM, on_site=True),
    "export_disk": AdminOp(DiskExport, ExportedDisk, on_site=True),
    "check_vms": AdminOp(VMList, list[str], on_site=True),
    "delete_restore_points": AdminOp(PointIds, DeletedPoints, on_site=True),
}


class AdminRefused(ValueError):
    """An Admin call outside the closed list, or with a payload its model rejects."""


def admin_request(operation: str, payload: dict[str, Any], site: str | None) -> BaseModel:
    """The validated request of an Admin call, or AdminRefused saying why not."""
    if site is not None:
        try:
            check_name(site, "site")
        except ValueError as e:
            raise AdminRefused(f"admin operation {operation!r}: {e}") from None
    op = ADMIN_OPS.get(operation)
    if op is None:
        raise AdminRefused(f"unknown admin operation {operation[:80]!r}; known: {', '.join(sorted(ADMIN_OPS))}")
    if op.on_site and not site:
        raise AdminRefused(f"admin operation {operation!r} runs on a site's worker: name the site")
    if not op.on_site and site:
        raise AdminRefused(f"admin operation {operation!r} runs on the catalog's worker, not on site {site!r}")
    try:
        return op.request.model_validate(payload)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg'].removeprefix('Value error, ')}"
                             for err in e.errors(include_url=False, include_input=False))
        raise AdminRefused(f"admin operation {operation!r}: invalid payload: {problems}") from None
