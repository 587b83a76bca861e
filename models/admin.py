"""The closed list of administrative operations the `Admin` workflow runs, each with its
request model. Anyone who can reach Temporal can start a workflow, so this list (not the
set of activities a worker happens to register) decides what an `Admin` call may do: the
workflow refuses an unknown operation or a payload its model rejects before any activity
runs. `on_site` says where the activity lives: a site's queue (the call must name the
site) or the catalog's (it must not)."""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from models.inventory import Cluster, Name, Site, Strict, check_name
from models.plans import BackupPlanSpec, PlanStatus, VMRef
from models.replication import ReplicationPlanSpec
from models.replication_jobs import HistoryQuery
from models.services import BackupService, RepositoryCreate, RepositoryFindingsQuery, RepositoryKeyFile


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


class AdminOp(NamedTuple):
    request: type[BaseModel]
    on_site: bool = False


ADMIN_OPS: dict[str, AdminOp] = {
    "add_site": AdminOp(Site),
    "list_sites": AdminOp(NoArgs),
    "add_cluster": AdminOp(Cluster),
    "list_clusters": AdminOp(SiteFilter),
    "put_backup_service": AdminOp(BackupService),
    "list_repositories": AdminOp(NoArgs),
    "add_backup_plan": AdminOp(BackupPlanSpec),
    "update_backup_plan": AdminOp(BackupPlanSpec),
    "get_backup_plan": AdminOp(ByName),
    "list_backup_plans": AdminOp(NoArgs),
    "set_backup_plan_status": AdminOp(SetPlanStatus),
    "delete_backup_plan": AdminOp(ByName),
    "list_restore_points": AdminOp(PointFilter),
    "get_restore_point": AdminOp(PointId),
    "list_jobs": AdminOp(JobFilter),
    "add_replication_plan": AdminOp(ReplicationPlanSpec),
    "update_replication_plan": AdminOp(ReplicationPlanSpec),
    "get_replication_plan": AdminOp(ByName),
    "list_replication_plans": AdminOp(NoArgs),
    "set_replication_plan_status": AdminOp(SetPlanStatus),
    "delete_replication_plan": AdminOp(ByName),
    "list_replicas": AdminOp(PlanFilter),
    "replica_history": AdminOp(HistoryQuery),
    # On the site's worker: they need its disks, repositories or clusters.
    "create_repository": AdminOp(RepositoryCreate, on_site=True),
    "add_repository_key": AdminOp(RepositoryKeyFile, on_site=True),
    "repository_findings": AdminOp(RepositoryFindingsQuery, on_site=True),
    "list_vms": AdminOp(ClusterName, on_site=True),
    "check_vms": AdminOp(VMList, on_site=True),
    "delete_restore_points": AdminOp(PointIds, on_site=True),
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
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'payload'}: {err['msg']}"
                             for err in e.errors(include_url=False, include_input=False))
        raise AdminRefused(f"admin operation {operation!r}: invalid payload: {problems}") from None
