"""Administrative activities behind the `Admin` workflow: catalog reads and writes for the
CLI, the API and services. Each takes the request model its operation has in
`models.admin.ADMIN_OPS` (the workflow validated it already; the data converter validates it
again into the model here) and returns the response model the operation declares there."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client

from activities.errors import InvalidRequest, translate_errors
from drivers.catalog.store import Catalog
from models.admin import (
    BackupPlanView,
    ByName,
    DeletedBackupPlan,
    DeletedPlan,
    Job,
    JobFilter,
    NoArgs,
    PlanFilter,
    PlanView,
    PointFilter,
    PointId,
    ReplicaRef,
    ReplicationPlanView,
    ReplicaView,
    RestorePointDetail,
    Services,
    SetPlanStatus,
    SiteFilter,
)
from models.inventory import Cluster, Site
from models.plan_pages import RunVMPage, RunVMQuery, RunVMRow
from models.plans import BackupPlanSpec, PlanStatus, RunResult
from models.replication import ReplicationObject, ReplicationPlanSpec
from models.replication_jobs import HistoryPage, HistoryQuery
from models.restore_points import RestorePointSummary
from models.services import BackupService, ReplicationService, RepositorySpec
from starter.runtime import job_ends

ViewT = TypeVar("ViewT", bound=PlanView[Any])


def plan_view(view: type[ViewT], spec: Any, state: tuple[PlanStatus, RunResult, datetime | None]) -> ViewT:
    """A plan as the CLI and the API show it: its spec and its run state."""
    status, result, last = state
    return view(spec=spec, status=status, last_result=result, last_run_at=last)


def check_local_cluster(cluster: Cluster) -> None:
    """A cluster's driver must exist and take its endpoint (local: an abdr cluster's directory
    or an empty/new one): refused here, before the catalog knows the cluster."""
    from drivers import check_cluster

    check_cluster(cluster)


class AdminActivities:
    def __init__(self, catalog: Catalog, client: Client | None = None) -> None:
        self.catalog = catalog
        self.client = client  # reconciles job rows with their runs' real ends (None: rows as written)

    @activity.defn(name="admin_add_site")
    @translate_errors
    def add_site(self, site: Site) -> Site:
        self.catalog.add_site(site)
        return site

    @activity.defn(name="admin_list_sites")
    @translate_errors
    def list_sites(self, _: NoArgs) -> list[Site]:
        return self.catalog.list_sites()

    @activity.defn(name="admin_add_cluster")
    @translate_errors
    def add_cluster(self, cluster: Cluster) -> Cluster:
        check_local_cluster(cluster)
        self.catalog.add_cluster(cluster)
        return cluster

    @activity.defn(name="admin_list_clusters")
    @translate_errors
    def list_clusters(self, p: SiteFilter) -> list[Cluster]:
        return self.catalog.list_clusters(p.site)

    @activity.defn(name="admin_put_backup_service")
    @translate_errors
    def put_backup_service(self, svc: BackupService) -> BackupService:
        self.catalog.put_service(svc)
        return svc

    @activity.defn(name="admin_put_replication_service")
    @translate_errors
    def put_replication_service(self, svc: ReplicationService) -> ReplicationService:
        self.catalog.put_service(svc)
        return svc

    @activity.defn(name="admin_list_services")
    @translate_errors
    def list_services(self, p: SiteFilter) -> Services:
        backup, replication = self.catalog.list_services(p.site)
        sites = [p.site] if p.site else [s.name for s in self.catalog.list_sites()]
        # A site with none configured runs with the defaults: show them, as its runs use them.
        backup += [self.catalog.site_backup_service(s) for s in sites if s not in {b.site for b in backup}]
        replication += [self.catalog.site_replication_service(s) for s in sites
                        if s not in {r.site for r in replication}]
        return Services(backup=backup, replication=replication)

    @activity.defn(name="admin_list_repositories")
    @translate_errors
    def list_repositories(self, _: NoArgs) -> list[RepositorySpec]:
        return self.catalog.list_repositories()

    @activity.defn(name="admin_add_backup_plan")
    @translate_errors
    def add_backup_plan(self, spec: BackupPlanSpec) -> BackupPlanSpec:
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)  # an unknown cluster is refused up front
        self.catalog.add_backup_plan(spec)
        return spec

    @activity.defn(name="admin_update_backup_plan")
    @translate_errors
    def update_backup_plan(self, spec: BackupPlanSpec) -> BackupPlanSpec:
        for ref in spec.vms:
            self.catalog.get_cluster(ref.cluster)
        self.catalog.update_backup_plan(spec)
        return spec

    def _backup_plan(self, name: str) -> BackupPlanView:
        return plan_view(BackupPlanView, self.catalog.get_backup_plan(name), self.catalog.backup_plan_state(name))

    @activity.defn(name="admin_get_backup_plan")
    @translate_errors
    def get_backup_plan(self, p: ByName) -> BackupPlanView:
        return self._backup_plan(p.name)

    @activity.defn(name="admin_list_backup_plans")
    @translate_errors
    def list_backup_plans(self, _: NoArgs) -> list[BackupPlanView]:
        return [self._backup_plan(spec.name) for spec in self.catalog.list_backup_plans()]

    @activity.defn(name="admin_set_backup_plan_status")
    @translate_errors
    def set_backup_plan_status(self, p: SetPlanStatus) -> BackupPlanView:
        self.catalog.set_backup_plan_state(p.name, status=p.status)
        return self._backup_plan(p.name)

    @activity.defn(name="admin_delete_backup_plan")
    @translate_errors
    def delete_backup_plan(self, p: ByName) -> DeletedBackupPlan:
        points = [pt.id for pt in self.catalog.list_restore_points(plan=p.name)]
        self.catalog.delete_backup_plan(p.name)
        return DeletedBackupPlan(deleted=p.name, points=points)

    @activity.defn(name="admin_list_restore_points")
    @translate_errors
    def list_restore_points(self, p: PointFilter) -> list[RestorePointSummary]:
        return self.catalog.list_restore_points(plan=p.plan, vm=p.vm)

    @activity.defn(name="admin_get_restore_point")
    @translate_errors
    def get_restore_point(self, p: PointId) -> RestorePointDetail:
        point = self.catalog.get_restore_point(p.id)
        return RestorePointDetail(**dict(point), vm_config=self.catalog.point_config(p.id))

    @activity.defn(name="admin_list_jobs")
    @translate_errors
    async def list_jobs(self, p: JobFilter) -> list[Job]:
        """The newest jobs; a row its workflow left unfinished first takes the end Temporal
        recorded for the run (compare-and-set: a row that ended meanwhile keeps its end)."""
        rows = self.catalog.list_jobs(plan=p.plan, limit=p.limit)
        unfinished = [(r.workflow_id, r.run_id) for r in rows if r.finished_at is None]
        if self.client is not None and unfinished:
            ends = await job_ends.run_ends(self.client, unfinished)
            changed = [self.catalog.end_job(wid, rid, end.value, why) for (wid, rid), (end, why) in ends.items()]
            if any(changed):
                rows = self.catalog.list_jobs(plan=p.plan, limit=p.limit)
        return [Job.model_validate(j, from_attributes=True) for j in rows]

    @activity.defn(name="admin_add_replication_plan")
    @translate_errors
    def add_replication_plan(self, spec: ReplicationPlanSpec) -> ReplicationPlanSpec:
        for cluster, site in ((spec.source_cluster, spec.source_site), (spec.target_cluster, spec.target_site)):
            if self.catalog.get_cluster(cluster).site != site:
                raise InvalidRequest(f"cluster {cluster!r} is not in site {site!r}")
        self.catalog.add_replication_plan(spec)
        return spec

    @activity.defn(name="admin_update_replication_plan")
    @translate_errors
    def update_replication_plan(self, spec: ReplicationPlanSpec) -> ReplicationPlanSpec:
        self.catalog.update_replication_plan(spec)
        return spec

    def _replication_plan(self, name: str) -> ReplicationPlanView:
        return plan_view(ReplicationPlanView, self.catalog.get_replication_plan(name),
                         self.catalog.replication_plan_state(name))

    @activity.defn(name="admin_get_replication_plan")
    @translate_errors
    def get_replication_plan(self, p: ByName) -> ReplicationPlanView:
        return self._replication_plan(p.name)

    @activity.defn(name="admin_list_replication_plans")
    @translate_errors
    def list_replication_plans(self, _: NoArgs) -> list[ReplicationPlanView]:
        return [self._replication_plan(s.name) for s in self.catalog.list_replication_plans()]

    @activity.defn(name="admin_set_replication_plan_status")
    @translate_errors
    def set_replication_plan_status(self, p: SetPlanStatus) -> ReplicationPlanView:
        self.catalog.set_replication_plan_state(p.name, status=p.status)
        return self._replication_plan(p.name)

    @activity.defn(name="admin_delete_replication_plan")
    @translate_errors
    def delete_replication_plan(self, p: ByName) -> DeletedPlan:
        self.catalog.delete_replication_plan(p.name)
        return DeletedPlan(deleted=p.name)

    @activity.defn(name="admin_replica_history")
    @translate_errors
    def replica_history(self, q: HistoryQuery) -> HistoryPage:
        """A page of a replica's history, newest first (`next_before` pages on)."""
        page, total = self.catalog.replica_history(q.plan, q.vm, q.limit, q.before)
        full = len(page) == q.limit
        return HistoryPage(entries=[c for _, c in page], total=total, next_before=page[-1][0] if full else None)

    @activity.defn(name="admin_list_run_vms")
    @translate_errors
    def list_run_vms(self, q: RunVMQuery) -> RunVMPage:
        """A page of a plan run's per-VM results, in the run's order (`next_offset` pages on)."""
        rows, total = self.catalog.run_vms(q.workflow_id, q.run_id, q.offset, q.limit, q.failed_only)
        end = q.offset + len(rows)
        return RunVMPage(rows=[RunVMRow(index=r.index, vm=r.vm, ok=r.ok, result=r.result) for r in rows], total=total,
                         next_offset=end if end < total else None)

    @activity.defn(name="admin_list_replica_points")
    @translate_errors
    def list_replica_points(self, r: ReplicaRef) -> list[RestorePointSummary]:
        """The points a failover of the replica can go to (`--restore-point ID`), newest first."""
        return self.catalog.replica_points(r.plan, r.vm)[::-1]

    @activity.defn(name="admin_list_replicas")
    @translate_errors
    def list_replicas(self, p: PlanFilter) -> list[ReplicaView]:
        """Replication objects with state, newest point and RPO lag (seconds)."""
        now = datetime.now(timezone.utc)
        return [self._replica_view(obj, now) for obj in self.catalog.replication_objects(p.plan)]

    @activity.defn(name="admin_get_replica")
    @translate_errors
    def get_replica(self, r: ReplicaRef) -> ReplicaView:
        """One replica: what a DR request checks before it starts (a listing of the plan's
        every replica per request made 200 failovers at once read 40,000 rows)."""
        self.catalog.get_replication_plan(r.plan)  # an unknown plan: NotFound naming the plan
        return self._replica_view(self.catalog.replication_object(r.plan, r.vm), datetime.now(timezone.utc))

    def _replica_view(self, obj: ReplicationObject, now: datetime) -> ReplicaView:
        _, transitions = self.catalog.replica_history(obj.plan, obj.source.vm, limit=1)
        return ReplicaView(**dict(obj), rpo_lag_s=obj.rpo_lag_seconds(now), transitions=transitions)
