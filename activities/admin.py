"""Administrative activities behind the `Admin` workflow: validated catalog reads and
writes for the CLI, the API and services. Payloads arrive as dicts (one generic workflow
carries them) and are validated here into the domain models; results are JSON-able."""

from __future__ import annotations

from typing import Any

from temporalio import activity

from datetime import datetime, timezone

from activities.errors import InvalidRequest, translate_errors
from drivers.catalog.store import Catalog
from models.inventory import Cluster, Site
from models.plans import BackupPlanSpec, PlanStatus, RunResult, VMRef
from models.replication import ReplicationPlanSpec
from models.services import BackupService


def _dump(items: list[Any]) -> list[dict]:
    return [i.model_dump(mode="json") for i in items]


def plan_view(spec: Any, state: tuple[PlanStatus, RunResult, datetime | None]) -> dict:
    """A plan as the CLI and the API show it: its spec and its run state."""
    status, result, last = state
    return {"spec": spec.model_dump(mode="json"), "status": status.value, "last_result": result.value,
            "last_run_at": last.isoformat() if last else None}


class AdminActivities:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @activity.defn(name="admin_add_site")
    @translate_errors
    def add_site(self, p: dict) -> dict:
        site = Site.model_validate(p)
        self.catalog.add_site(site)
        return site.model_dump(mode="json")

    @activity.defn(name="admin_list_sites")
    @translate_errors
    def list_sites(self, p: dict) -> list[dict]:
        return _dump(self.catalog.list_sites())

    @activity.defn(name="admin_add_cluster")
    @translate_errors
    def add_cluster(self, p: dict) -> dict:
        cluster = Cluster.model_validate(p)
        self.catalog.add_cluster(cluster)
        return cluster.model_dump(mode="json")

    @activity.defn(name="admin_list_clusters")
    @translate_errors
    def list_clusters(self, p: dict) -> list[dict]:
        return _dump(self.catalog.list_clusters(p.get("site")))

    @activity.defn(name="admin_put_backup_service")
    @translate_errors
    def put_backup_service(self, p: dict) -> dict:
        svc = BackupService.model_validate(p)
        self.catalog.put_service(svc)
        return svc.model_dump(mode="json")

    @activity.defn(name="admin_list_repositories")
    @translate_errors
    def list_repositories(self, p: dict) -> list[dict]:
        return _dump(self.catalog.list_repositories())

    @activity.defn(name="admin_add_backup_plan")
    @translate_errors
    def add_backup_plan(self, p: dict) -> dict:
        spec = BackupPlanSpec.model_validate(p)
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)  # an unknown cluster is refused up front
        self.catalog.add_backup_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_update_backup_plan")
    @translate_errors
    def update_backup_plan(self, p: dict) -> dict:
        spec = BackupPlanSpec.model_validate(p)
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)
        self.catalog.update_backup_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_get_backup_plan")
    @translate_errors
    def get_backup_plan(self, p: dict) -> dict:
        return plan_view(self.catalog.get_backup_plan(p["name"]), self.catalog.backup_plan_state(p["name"]))

    @activity.defn(name="admin_list_backup_plans")
    @translate_errors
    def list_backup_plans(self, p: dict) -> list[dict]:
        return [self.get_backup_plan({"name": spec.name}) for spec in self.catalog.list_backup_plans()]

    @activity.defn(name="admin_set_backup_plan_status")
    @translate_errors
    def set_backup_plan_status(self, p: dict) -> dict:
        self.catalog.set_backup_plan_state(p["name"], status=PlanStatus(p["status"]))
        return self.get_backup_plan({"name": p["name"]})

    @activity.defn(name="admin_delete_backup_plan")
    @translate_errors
    def delete_backup_plan(self, p: dict) -> dict:
        points = [pt.id for pt in self.catalog.list_restore_points(plan=p["name"])]
        self.catalog.delete_backup_plan(p["name"])
        return {"deleted": p["name"], "points": points}

    @activity.defn(name="admin_list_restore_points")
    @translate_errors
    def list_restore_points(self, p: dict) -> list[dict]:
        vm = VMRef.model_validate(p["vm"]) if p.get("vm") else None
        return _dump(self.catalog.list_restore_points(plan=p.get("plan"), vm=vm))

    @activity.defn(name="admin_get_restore_point")
    @translate_errors
    def get_restore_point(self, p: dict) -> dict:
        point = self.catalog.get_restore_point(p["id"])
        return {**point.model_dump(mode="json"),
                "vm_config": self.catalog.point_config(p["id"]).model_dump(mode="json")}

    @activity.defn(name="admin_list_jobs")
    @translate_errors
    def list_jobs(self, p: dict) -> list[dict]:
        return [j.model_dump(mode="json") for j in self.catalog.list_jobs(plan=p.get("plan"), limit=p.get("limit", 50))]

    @activity.defn(name="admin_add_replication_plan")
    @translate_errors
    def add_replication_plan(self, p: dict) -> dict:
        spec = ReplicationPlanSpec.model_validate(p)
        for cluster, site in ((spec.source_cluster, spec.source_site), (spec.target_cluster, spec.target_site)):
            if self.catalog.get_cluster(cluster).site != site:
                raise InvalidRequest(f"cluster {cluster!r} is not in site {site!r}")
        self.catalog.add_replication_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_update_replication_plan")
    @translate_errors
    def update_replication_plan(self, p: dict) -> dict:
        spec = ReplicationPlanSpec.model_validate(p)
        self.catalog.update_replication_plan(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_get_replication_plan")
    @translate_errors
    def get_replication_plan(self, p: dict) -> dict:
        return plan_view(self.catalog.get_replication_plan(p["name"]),
                         self.catalog.replication_plan_state(p["name"]))

    @activity.defn(name="admin_list_replication_plans")
    @translate_errors
    def list_replication_plans(self, p: dict) -> list[dict]:
        return [self.get_replication_plan({"name": s.name}) for s in self.catalog.list_replication_plans()]

    @activity.defn(name="admin_set_replication_plan_status")
    @translate_errors
    def set_replication_plan_status(self, p: dict) -> dict:
        self.catalog.set_replication_plan_state(p["name"], status=PlanStatus(p["status"]))
        return self.get_replication_plan({"name": p["name"]})

    @activity.defn(name="admin_delete_replication_plan")
    @translate_errors
    def delete_replication_plan(self, p: dict) -> dict:
        self.catalog.delete_replication_plan(p["name"])
        return {"deleted": p["name"]}

    @activity.defn(name="admin_list_replicas")
    @translate_errors
    def list_replicas(self, p: dict) -> list[dict]:
        """Replication objects with state, newest point and RPO lag (seconds)."""
        now = datetime.now(timezone.utc)
        out = []
        for obj in self.catalog.replication_objects(p.get("plan")):
            out.append({**obj.model_dump(mode="json", exclude={"history"}), "rpo_lag_s": obj.rpo_lag_seconds(now),
                        "transitions": len(obj.history)})
        return out

    def all(self) -> list[Any]:
        return [getattr(self, name) for name in dir(self)
                if not name.startswith("_") and hasattr(getattr(self, name), "__temporal_activity_definition")]
