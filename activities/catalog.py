"""Catalog activities: they run on the workflow queue (the catalog is central and must be
reachable while a site is down). Thin: read or write the catalog, nothing else."""

from __future__ import annotations

from temporalio import activity

from activities.errors import InvalidRequest, PointDamaged, translate_errors
from drivers.catalog.store import Catalog
from models.activity_api import CatalogApi
from models.jobs import (
    BackupBase,
    JobRecord,
    MaintenanceInput,
    PlanResultInput,
    PlanRunInput,
    RecordPointInput,
    ResolvedPlan,
    ResolvedRestore,
    ResolvedVM,
    RestoreInput,
)
from models.plan_pages import RunVMResults
from models.plans import PlanStatus, VMRef
from models.requests import RestoreMode
from models.restore_points import PointState, RestorePointSummary, unrestorable
from models.services import RepositorySpec


def point_summary(inp: RecordPointInput) -> RestorePointSummary:
    return RestorePointSummary(id=inp.point_id, plan=inp.plan, cluster=inp.vm.cluster, vm=inp.vm.vm,
                               type=inp.type, creation=inp.creation, created_at=inp.created_at,
                               repository=inp.repository, logical_bytes=inp.logical_bytes,
                               stored_bytes=inp.stored_bytes)


def record_point(catalog: Catalog, inp: RecordPointInput) -> None:
    """A committed point into the catalog (idempotent: a retry records it once)."""
    catalog.add_restore_point(point_summary(inp), base_id=inp.base_point_id, snapshot_id=inp.snapshot_id,
                              vm_config=inp.vm_config)


class CatalogActivities(CatalogApi):
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    @activity.defn(name="resolve_plan")
    @translate_errors
    def resolve_plan(self, inp: PlanRunInput) -> ResolvedPlan:
        c = self.catalog
        spec = c.get_backup_plan(inp.plan)
        status, _, _ = c.backup_plan_state(inp.plan)
        repo = c.get_repository(spec.repository)
        service = c.backup_service(spec.backup_service, repo.site)
        refs = spec.vms
        if inp.page_size is not None:  # a page of a run that goes in pages (models/plan_pages.py)
            start = inp.page.offset if inp.page else 0
            refs = refs[start:start + inp.page_size]
        vms = []
        for ref in refs:
            try:
                vms.append(ResolvedVM(ref=ref, site=c.get_cluster(ref.cluster).site))
            except Exception as e:  # one VM's unknown cluster fails that VM, not the run
                vms.append(ResolvedVM(ref=ref, site="", error=str(e)))
        return ResolvedPlan(
            plan=spec.name, repository=repo.name, repository_path=repo.path, repository_site=repo.site, vms=vms,
            window=spec.window, time_zone=spec.schedule.time_zone, delay_option=spec.delay_option,
            retention=spec.retention, consistency=spec.consistency, compression=spec.compression,
            max_parallel=service.max_parallel_backups, read_iops=service.backup_read_iops, max_retries=service.max_retries,
            retry_interval_s=service.retry_interval_s, full_due=spec.full_due_at(inp.scheduled_at),
            paused=status != PlanStatus.WORKING, vm_count=len(spec.vms) if inp.page_size is not None else None)

    @activity.defn(name="record_point")
    @translate_errors
    def record_point(self, inp: RecordPointInput) -> None:
        record_point(self.catalog, inp)

    @activity.defn(name="record_run_vms")
    @translate_errors
    def record_run_vms(self, inp: RunVMResults) -> None:
        self.catalog.put_run_vms(inp.workflow_id, inp.run_id, inp.plan,
                                 [(r.index, r.vm, r.ok, r.result) for r in inp.rows])

    @activity.defn(name="set_plan_result")
    @translate_errors
    def set_plan_result(self, inp: PlanResultInput) -> None:
        self.catalog.set_backup_plan_state(inp.plan, result=inp.result, run_at=inp.at)

    @activity.defn(name="record_job")
    @translate_errors
    def record_job(self, job: JobRecord) -> None:
        self.catalog.record_job(job.workflow_id, job.run_id, job.operation.value, job.status, plan=job.plan,
                                vm=job.vm, result=job.result, finished=job.finished)

    @activity.defn(name="get_repository")
    @translate_errors
    def get_repository(self, inp: MaintenanceInput) -> RepositorySpec:
        return self.catalog.get_repository(inp.repository)

    @activity.defn(name="resolve_restore")
    @translate_errors
    def resolve_restore(self, inp: RestoreInput) -> ResolvedRestore:
        req, c = inp.request, self.catalog
        point = c.get_restore_point(req.point_id)
        if why := unrestorable(point.id, point.state):
            raise (PointDamaged if point.state == PointState.DAMAGED else InvalidRequest)(why)
        source = VMRef(cluster=point.cluster, vm=point.vm)
        if point.repository is None:
            raise InvalidRequest(f"restore point {point.id!r} is not in a backup repository")
        repo = c.get_repository(point.repository)
        config = c.point_config(point.id)
        base = BackupBase()
        if req.mode == RestoreMode.INPLACE:
            if req.vm is not None and req.vm != str(source):
                raise InvalidRequest(f"restore point {point.id!r} belongs to VM {source}, not {req.vm}")
            target = source
            known = c.backup_base(source)
            if known:
                base = BackupBase(point_id=known[0], snapshot_id=known[1])
        else:
            assert req.new_name is not None
            target = VMRef(cluster=req.target_cluster or source.cluster, vm=req.new_name)
            config = config.model_copy(update={"name": req.new_name})
        site = c.get_cluster(target.cluster).site
        service = c.site_backup_service(site)
        return ResolvedRestore(point_id=point.id, repository_path=repo.path, source=source, target=target, site=site,
                               config=config, base=base, write_iops=service.restore_write_iops)
