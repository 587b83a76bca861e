"""Administrative activities behind the `Admin` workflow: catalog reads and writes for the
CLI, the API and services. Each takes the request model its operation has in
`models.admin.ADMIN_OPS` (the workflow validated it already; the data converter validates it
again into the model here); results are JSON-able."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from temporalio import activity

from activities.errors import InvalidRequest, translate_errors
from drivers.catalog.store import Catalog
from models.admin import (
    ByName,
    JobFilter,
    NoArgs,
    PlanFilter,
    PointFilter,
    PointId,
    SetPlanStatus,
    SiteFilter,
)
from models.inventory import Cluster, Site
from models.plans import BackupPlanSpec, PlanStatus, RunResult
from models.replication import ReplicationPlanSpec
from models.replication_jobs import HistoryPage, HistoryQuery
from models.services import BackupService


def _dump(items: list[Any]) -> list[dict]:
    return [i.model_dump(mode="json") for i in items]


def plan_view(spec: Any, state: tuple[PlanStatus, RunResult, datetime | None]) -> dict:
    """A plan as the CLI and the API show it: its spec and its run state."""
    status, result, last = state
    return {"spec": spec.model_dump(mode="json"), "status": status.value, "last_result": result.value,
            "last_run_at": last.isoformat() if last else None}


def check_local_cluster(cluster: Cluster) -> None:
    """A cluster's driver must exist and take its endpoint (local: an abdr cluster's directory
    or an empty/new one): refused here, before the catalog knows the cluster."""
    from drivers import check_cluster

    check_cluster(cluster)


class AdminActivities:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @activity.defn(name="admin_add_site")
    @translate_errors
    def add_site(self, site: Site) -> dict:
        self.catalog.add_site(site)
        return site.model_dump(mode="json")

    @activity.defn(name="admin_list_sites")
    @translate_errors
    def list_sites(self, _: NoArgs) -> list[dict]:
        return _dump(self.catalog.list_sites())

    @activity.defn(name="admin_add_cluster")
    @translate_errors
    def add_cluster(self, cluster: Cluster) -> dict:
        check_local_cluster(cluster)
        self.catalog.add_cluster(cluster)
        return cluster.model_dump(mode="json")

    @activity.defn(name="admin_list_clusters")
    @translate_errors
    def list_clusters(self, p: SiteFilter) -> list[dict]:
        return _dump(self.catalog.list_clusters(p.site))

    @activity.defn(name="admin_put_backup_service")
    @translate_errors
    def put_backup_service(self, svc: BackupService) -> dict:
        self.catalog.put_service(svc)
        return svc.model_dump(mode="json")

    @activity.defn(name="admin_list_repositories")
    @translate_errors
    def list_repositories(self, _: NoArgs) -> list[dict]:
        return _dump(self.catalog.list_repositories())

    @activity.defn(name="admin_add_backup_plan")
    @translate_errors
    def add_backup_plan(self, spec: BackupPlanSpec) -> dict:
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)  # an unknown cluster is refused up front
        self.catalog.add_backup_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_update_backup_plan")
    @translate_errors
    def update_backup_plan(self, spec: BackupPlanSpec) -> dict:
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)
        self.catalog.update_backup_plan(spec)
        return spec.model_dump(mode="json")

    def _backup_plan(self, name: str) -> dict:
        return plan_view(self.catalog.get_backup_plan(name), self.catalog.backup_plan_state(name))

    @activity.defn(name="admin_get_backup_plan")
    @translate_errors
    def get_backup_plan(self, p: ByName) -> dict:
        return self._backup_plan(p.name)

    @activity.defn(name="admin_list_backup_plans")
    @translate_errors
    def list_backup_plans(self, _: NoArgs) -> list[dict]:
        return [self._backup_plan(spec.name) for spec in self.catalog.list_backup_plans()]

    @activity.defn(name="admin_set_backup_plan_status")
    @translate_errors
    def set_backup_plan_status(self, p: SetPlanStatus) -> dict:
        self.catalog.set_backup_plan_state(p.name, status=p.status)
        return self._backup_plan(p.name)

    @activity.defn(name="admin_delete_backup_plan")
    @translate_errors
    def delete_backup_plan(self, p: ByName) -> dict:
        points = [pt.id for pt in self.catalog.list_restore_points(plan=p.name)]
        self.catalog.delete_backup_plan(p.name)
        return {"deleted": p.name, "points": points}

    @activity.defn(name="admin_list_restore_points")
    @translate_errors
    def list_restore_points(self, p: PointFilter) -> list[dict]:
        return _dump(self.catalog.list_restore_points(plan=p.plan, vm=p.vm))

    @activity.defn(name="admin_get_restore_point")
    @translate_errors
    def get_restore_point(self, p: PointId) -> dict:
        point = self.catalog.get_restore_point(p.id)
        return {**point.model_dump(mode="json"), "vm_config": self.catalog.point_config(p.id).model_dump(mode="json")}

    @activity.defn(name="admin_list_jobs")
    @translate_errors
    def list_jobs(self, p: JobFilter) -> list[dict]:
        return [j.model_dump(mode="json") for j in self.catalog.list_jobs(plan=p.plan, limit=p.limit)]

    @activity.defn(name="admin_add_replication_plan")
    @translate_errors
    def add_replication_plan(self, spec: ReplicationPlanSpec) -> dict:
        for cluster, site in ((spec.source_cluster, spec.source_site), (spec.target_cluster, spec.target_site)):
            if self.catalog.get_cluster(cluster).site != site:
                raise InvalidRequest(f"cluster {cluster!r} is not in site {site!r}")
        self.catalog.add_replication_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_update_replication_plan")
    @translate_errors
    def update_replication_plan(self, spec: ReplicationPlanSpec) -> dict:
        self.catalog.update_replication_plan(spec)
        return spec.model_dump(mode="json")

    def _replication_plan(self, name: str) -> dict:
        return plan_view(self.catalog.get_replication_plan(name), self.catalog.replication_plan_state(name))

    @activity.defn(name="admin_get_replication_plan")
    @translate_errors
    def get_replication_plan(self, p: ByName) -> dict:
        return self._replication_plan(p.name)

    @activity.defn(name="admin_list_replication_plans")
    @translate_errors
    def list_replication_plans(self, _: NoArgs) -> list[dict]:
        return [self._replication_plan(s.name) for s in self.catalog.list_replication_plans()]

    @activity.defn(name="admin_set_replication_plan_status")
    @translate_errors
    def set_replication_plan_status(self, p: SetPlanStatus) -> dict:
        self.catalog.set_replication_plan_state(p.name, status=p.status)
        return self._replication_plan(p.name)

    @activity.defn(name="admin_delete_replication_plan")
    @translate_errors
    def delete_replication_plan(self, p: ByName) -> dict:
        self.catalog.delete_replication_plan(p.name)
        return {"deleted": p.name}

    @activity.defn(name="admin_replica_history")
    @translate_errors
    def replica_history(self, q: HistoryQuery) -> dict:
        """A page of a replica's history, newest first (`next_before` pages on)."""
        page, total = self.catalog.replica_history(q.plan, q.vm, q.limit, q.before)
        full = len(page) == q.limit
        return HistoryPage(entries=[c for _, c in page], total=total,
                           next_before=page[-1][0] if full else None).model_dump(mode="json")

    @activity.defn(name="admin_list_replicas")
    @translate_errors
    def list_replicas(self, p: PlanFilter) -> list[dict]:
        """Replication objects with state, newest point and RPO lag (seconds)."""
        now = datetime.now(timezone.utc)
        out = []
        for obj in self.catalog.replication_objects(p.plan):
            _, transitions = self.catalog.replica_history(obj.plan, obj.source.vm, limit=1)
            out.append({**obj.model_dump(mode="json"), "rpo_lag_s": obj.rpo_lag_seconds(now),
                        "transitions": transitions})
        return out
