"""Administrative activities that need a site's I/O: creating a repository on its path,
listing a cluster's VMs (refreshing the catalog's cache), deleting restore points, and
repository maintenance (verify, prune by each plan's retention, garbage collection)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from temporalio import activity

from activities.backup import BackupActivities
from activities.errors import InvalidRequest, translate_errors
from activities.resources import Resources
from models.plans import VMRef
from models.jobs import MaintenanceInput, MaintenanceResult
from models.restore_points import PointState
from models.retention import expired_points
from models.services import RepositorySpec


class SiteAdminActivities:
    def __init__(self, res: Resources, backup: BackupActivities) -> None:
        self.res = res
        self.backup = backup

    @activity.defn(name="admin_create_repository")
    @translate_errors
    def create_repository(self, p: dict) -> dict:
        from drivers.repository import Repository

        spec = RepositorySpec.model_validate(p)
        path = Path(spec.path)
        if spec.site != self.res.site:
            raise InvalidRequest(f"repository {spec.name!r} belongs to site {spec.site!r}, not {self.res.site!r}")
        if not path.parent.is_dir():
            raise InvalidRequest(f"repository path {spec.path}: parent directory {path.parent} does not exist "
                                 "(mount the volume first)")
        if path.exists() and any(path.iterdir()):
            Repository.open(path)  # an existing abdr repository is adopted; anything else is refused
        else:
            Repository.init(path)
        self.res.catalog.add_repository(spec)
        return spec.model_dump(mode="json")

    @activity.defn(name="admin_list_vms")
    @translate_errors
    def list_vms(self, p: dict) -> list[dict]:
        vms = self.res.driver(p["cluster"]).list_vms()
        self.res.catalog.cache_vms(p["cluster"], vms)
        return [v.model_dump(mode="json") for v in vms]

    @activity.defn(name="admin_check_vms")
    @translate_errors
    def check_vms(self, p: dict) -> list[str]:
        """Every VM named exists on its cluster (a plan over a VM that is not there is refused)."""
        refs = [VMRef.model_validate(v) for v in p["vms"]]
        return [self.backup.vm_id(ref) for ref in refs]

    @activity.defn(name="admin_delete_restore_points")
    @translate_errors
    def delete_restore_points(self, p: dict) -> dict:
        catalog = self.res.catalog
        by_repo: dict[str, list[str]] = {}
        for pid in p["ids"]:
            point = catalog.get_restore_point(pid)
            by_repo.setdefault(point.repository or "", []).append(pid)
        for repo_name, ids in by_repo.items():
            repo = catalog.get_repository(repo_name)
            self.backup.delete_points(repo.path, ids)
        return {"deleted": p["ids"]}

    @activity.defn(name="maintain_repository")
    @translate_errors
    def maintain_repository(self, inp: MaintenanceInput) -> MaintenanceResult:
        catalog = self.res.catalog
        spec = catalog.get_repository(inp.repository)
        repo = self.res.repository(spec.path)
        out = MaintenanceResult(repository=inp.repository)
        if inp.prune:
            now = datetime.now(timezone.utc)
            for plan in catalog.list_backup_plans():
                if plan.repository == inp.repository:
                    expired = expired_points(catalog.list_restore_points(plan=plan.name), plan.retention, now)
                    self.backup.delete_points(spec.path, expired)
                    out.pruned_points += expired
        if inp.verify:
            activity.heartbeat("verify")
            report = repo.verify()
            out.verified_points = len(report.points_checked)
            out.damaged = [d.model_dump(mode="json") for d in report.damaged]
            for pid in report.damaged_points:
                catalog.set_point_state(pid, PointState.DAMAGED)
        if inp.gc:
            activity.heartbeat("gc")
            gc = repo.gc()
            out.gc_removed_chunks, out.gc_removed_bytes = gc.swept_chunks, gc.swept_bytes
        return out
