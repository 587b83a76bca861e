"""The Python client of abdr, for the CLI, the REST API and other services. It needs only
a Temporal connection: catalog calls are Updates of the admin service workflow, operations
as their workflows, plans as Temporal Schedules.

    client = await AbdrClient.connect()
    await client.run_backup_plan("gold", full=True)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, TimeoutError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes as sa
from models.admin import (
    ADMIN_OPS,
    BackupPlanView,
    CreatedRepository,
    DeletedBackupPlan,
    DeletedPlan,
    DeletedPoints,
    ExportedDisk,
    FindingsPage,
    InstalledKey,
    Job,
    JobDescription,
    ReplicationPlanView,
    ReplicaView,
    RestorePointDetail,
    Services,
)
from models.ids import dr_id, drill_id, maintenance_id, plan_run_id, replication_run_id, restore_id
from models.inventory import VM, Cluster, Site
from models.jobs import MaintenanceInput, PlanRunInput, RestoreInput, RestoreResult
from models.plans import BackupPlanSpec, PlanStatus, VMRef
from models.queues import WORKFLOW_TASK_QUEUE
from models.replication import ReplicationPlanSpec
from models.replication_jobs import DrOperationResult, HistoryPage, ReplicationRunInput
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    FailoverTestRequest,
    PermanentFailoverRequest,
    RestoreRequest,
    UndoFailoverRequest,
)
from models.restore_points import PointState, RestorePointSummary, unrestorable
from models.services import BackupService, ReplicationService, RepositorySpec
from starter.client import summaries
from starter.client.admin_service import AdminServiceUnanswered, call_admin_service
from starter.client.errors import Busy, Conflict, Damaged, Invalid, NotFound, Unavailable, failure_error
from starter.runtime import job_ends, schedules
from starter.runtime.connection import connect
from starter.runtime.settings import Settings, get_settings
from workflows.admin import AdminCall
from workflows.drill import FailoverTestWorkflow
from workflows.failback import FailbackWorkflow, PermanentFailoverWorkflow
from workflows.failover import FailoverWorkflow, UndoFailoverWorkflow
from workflows.maintenance import RepositoryMaintenanceWorkflow
from workflows.plan_run import BackupPlanRunWorkflow
from workflows.replication_plan import ReplicationPlanRunWorkflow
from workflows.restore import RestoreWorkflow

ADMIN_TIMEOUT = timedelta(seconds=60)
ADMIN_IN_FLIGHT = 8  # below the 10 Updates Temporal takes in flight per workflow, leaving room for other clients
# An export copies a whole disk in one Admin activity (5 minutes to a try, at most 10 in all).
EXPORT_TIMEOUT = timedelta(minutes=10)
# The jobs a cancel leaves clean: a plan run stops its VMs as at its window's end, and a
# VM's backup or replication cleans up after itself (what the window-end tests exercise).
# The others (restore, DR operations, drills, maintenance) would stop half-done.
CANCELLABLE = frozenset({"BackupPlanRun", "ReplicationPlanRun", "VMBackup", "Replicate"})
# A workflow class, its input and its result, read from the run method started.
S = TypeVar("S")
A = TypeVar("A")
R = TypeVar("R")


class AbdrClient:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        # Temporal takes 10 Updates in flight per workflow and turns the rest away: calls
        # beyond that wait here, in order, rather than all retrying against the server
        # (200 failovers at once did, and their checks timed out).
        self._admin_slots = asyncio.Semaphore(ADMIN_IN_FLIGHT)

    @classmethod
    async def connect(cls, settings: Settings | None = None) -> "AbdrClient":
        settings = settings or get_settings()
        return cls(await connect(settings), settings)

    # -- plumbing -----------------------------------------------------------------------

    async def admin(self, operation: str, payload: dict[str, Any] | None = None, site: str | None = None,
                    timeout: timedelta = ADMIN_TIMEOUT) -> Any:
        """Run an admin operation on the admin service; its answer as the response model
        `models.admin.ADMIN_OPS` declares."""
        call = AdminCall(operation=operation, payload=payload or {}, site=site,
                         timeout_s=int(timeout.total_seconds()))
        try:
            async with self._admin_slots:
                return await call_admin_service(self.client, call, ADMIN_OPS[operation].response)
        except AdminServiceUnanswered:
            raise Unavailable(f"{operation}: no abdr orchestration worker answered within "
                              f"{int(timeout.total_seconds())} s (is it running? `abdr status`)") from None
        except WorkflowUpdateFailedError as e:
            if isinstance(e.cause, ActivityError) and isinstance(e.cause.cause, TimeoutError):
                where = f"site {site!r}'s worker" if site else "an abdr worker"
                raise Unavailable(f"{operation}: {where} did not answer within {int(timeout.total_seconds())} s "
                                  "(is it running? `abdr status`)") from None
            raise failure_error(e) from None

    async def _start(self, workflow: Callable[[S, A], Awaitable[R]], arg: A, wf_id: str, busy: str,
                     summary: str, plan: str | None = None) -> WorkflowHandle[S, R]:
        """Start an operation's workflow: every run abdr starts goes through here, so each one
        carries its Web UI summary and details, and its plan's search attribute from the
        start (a restore never tags one itself: the plan is its point's)."""
        attrs = TypedSearchAttributes([SearchAttributePair(sa.PLAN, plan)] if plan else [])
        try:
            return await self.client.start_workflow(workflow, arg, id=wf_id, task_queue=WORKFLOW_TASK_QUEUE,
                                                    static_summary=summary, static_details=summaries.details(arg),
                                                    search_attributes=attrs)
        except WorkflowAlreadyStartedError:
            raise Busy(f"{busy} (workflow {wf_id} is running; see {self.ui_link(wf_id)})") from None

    @staticmethod
    async def result(handle: WorkflowHandle) -> Any:
        try:
            return await handle.result()
        except WorkflowFailureError as e:
            raise failure_error(e) from None

    def ui_link(self, workflow_id: str, run_id: str | None = None) -> str:
        base = f"{self.settings.temporal_ui_url}/namespaces/{self.settings.temporal_namespace}/workflows/"
        return base + quote(workflow_id, safe="") + (f"/{run_id}" if run_id else "")

    # -- inventory ------------------------------------------------------------------------

    async def add_site(self, name: str, description: str = "") -> Site:
        return await self.admin("add_site", {"name": name, "description": description})

    async def add_cluster(self, name: str, site: str, driver: str = "local", endpoint: str = "") -> Cluster:
        return await self.admin("add_cluster", {"name": name, "site": site, "driver": driver, "endpoint": endpoint})

    async def list_sites(self) -> list[Site]:
        return await self.admin("list_sites")

    async def list_clusters(self, site: str | None = None) -> list[Cluster]:
        return await self.admin("list_clusters", {"site": site})

    async def list_vms(self, cluster: str, site: str | None = None) -> list[VM]:
        """A cluster's VMs, asked of its site's worker (`site`: the cluster's, if known)."""
        return await self.admin("list_vms", {"cluster": cluster}, site=site or await self._cluster_site(cluster))

    async def _cluster_site(self, cluster: str) -> str:
        found = next((c for c in await self.list_clusters() if c.name == cluster), None)
        if found is None:
            raise NotFound(f"cluster {cluster!r} not found")
        return found.site

    async def start_vm(self, cluster: str, vm: str) -> VM:
        """Power a VM on, on its cluster's site worker."""
        return await self.admin("start_vm", {"cluster": cluster, "vm": vm}, site=await self._cluster_site(cluster))

    async def stop_vm(self, cluster: str, vm: str, force: bool = False, timeout_s: int = 30) -> VM:
        """Shut a VM down gracefully (the guest has `timeout_s`), or with `force` power it off."""
        return await self.admin("stop_vm", {"cluster": cluster, "vm": vm, "force": force, "timeout_s": timeout_s},
                                site=await self._cluster_site(cluster))

    async def export_disk(self, cluster: str, vm: str, disk: str, path: str,
                          point: str | None = None) -> ExportedDisk:
        """A raw image of a stopped VM's disk, or of that disk in restore point `point`,
        written to the new file `path` on the worker of the site that holds the data (the
        cluster's, or the point's repository's)."""
        if point is None:
            site = await self._cluster_site(cluster)
        else:
            site = await self._repository_site((await self.get_restore_point(point)).repository or "")
        return await self.admin("export_disk", {"cluster": cluster, "vm": vm, "disk": disk, "path": path,
                                                "point": point}, site=site, timeout=EXPORT_TIMEOUT)

    # -- services -------------------------------------------------------------------------

    async def list_services(self, site: str | None = None) -> Services:
        """Sites' backup and replication services with their limits (a site's defaults where
        it has none configured)."""
        return await self.admin("list_services", {"site": site})

    async def put_service(self, svc: BackupService | ReplicationService) -> BackupService | ReplicationService:
        """Configure a service's limits (runs that start from now on use them)."""
        if svc.site not in {s.name for s in await self.list_sites()}:
            raise NotFound(f"site {svc.site!r} not found")
        op = "put_backup_service" if isinstance(svc, BackupService) else "put_replication_service"
        return await self.admin(op, svc.model_dump(mode="json"))

    # -- repositories -----------------------------------------------------------------------

    async def create_repository(self, spec: RepositorySpec) -> CreatedRepository:
        return await self.admin("create_repository", spec.model_dump(mode="json"), site=spec.site)

    async def list_repositories(self) -> list[RepositorySpec]:
        return await self.admin("list_repositories")

    async def maintain_repository(self, name: str, *, verify: bool = True, prune: bool = False,
                                  gc: bool = False, read_iops: int | None = None) -> WorkflowHandle:
        return await self._start(RepositoryMaintenanceWorkflow.run, MaintenanceInput(
            repository=name, verify=verify, prune=prune, gc=gc, read_iops=read_iops),
            maintenance_id(name), f"maintenance of repository {name!r} is already running",
            f"maintenance of repository {name}: " + ", ".join(
                step for step, on in (("verify", verify), ("prune", prune), ("gc", gc)) if on))

    async def _repository_site(self, name: str) -> str:
        for r in await self.list_repositories():
            if r.name == name:
                return r.site
        raise NotFound(f"repository {name!r} not found")

    async def add_repository_key(self, name: str, key_file: str) -> InstalledKey:
        """Give the repository's site worker its key, by path (the key itself never travels)."""
        return await self.admin("add_repository_key", {"name": name, "key_file": key_file},
                                site=await self._repository_site(name))

    async def repository_findings(self, name: str, offset: int = 0, limit: int = 100) -> FindingsPage:
        """A page of the last verify's findings."""
        return await self.admin("repository_findings", {"name": name, "offset": offset, "limit": limit},
                                site=await self._repository_site(name))

    # -- backup plans ---------------------------------------------------------------------

    async def check_vms(self, vms: Sequence[VMRef]) -> None:
        """Every VM named exists: asked of each cluster's site worker."""
        sites = {c.name: c.site for c in await self.list_clusters()}
        by_site: dict[str, list[dict]] = {}
        for ref in vms:
            if ref.cluster not in sites:
                raise NotFound(f"cluster {ref.cluster!r} not found")
            by_site.setdefault(sites[ref.cluster], []).append(ref.model_dump())
        for site, refs in by_site.items():
            await self.admin("check_vms", {"vms": refs}, site=site)

    async def create_backup_plan(self, spec: BackupPlanSpec) -> BackupPlanSpec:
        await self.check_vms(spec.vms)
        created = await self.admin("add_backup_plan", spec.model_dump(mode="json"))
        try:
            await schedules.upsert(self.client, spec)
        except Exception:
            await self.admin("delete_backup_plan", {"name": spec.name})  # no plan without its schedule
            raise
        return created

    async def update_backup_plan(self, spec: BackupPlanSpec) -> BackupPlanSpec:
        current = await self.get_backup_plan(spec.name)
        await self.check_vms(spec.vms)
        updated = await self.admin("update_backup_plan", spec.model_dump(mode="json"))
        await schedules.upsert(self.client, spec, paused=current.status != PlanStatus.WORKING)
        return updated

    async def get_backup_plan(self, name: str) -> BackupPlanView:
        return await self.admin("get_backup_plan", {"name": name})

    async def list_backup_plans(self) -> list[BackupPlanView]:
        return await self.admin("list_backup_plans")

    async def set_backup_plan_paused(self, name: str, paused: bool) -> BackupPlanView:
        status = PlanStatus.PAUSED if paused else PlanStatus.WORKING
        result = await self.admin("set_backup_plan_status", {"name": name, "status": status.value})
        await schedules.set_paused(self.client, name, paused, note=f"{status.value} by abdr")
        return result

    async def delete_backup_plan(self, name: str, delete_points: bool) -> DeletedBackupPlan:
        plan = await self.get_backup_plan(name)
        await schedules.delete(self.client, name)
        deleted: DeletedBackupPlan = await self.admin("delete_backup_plan", {"name": name})
        if delete_points and deleted.points:
            repo = next(r for r in await self.list_repositories() if r.name == plan.spec.repository)
            await self.admin("delete_restore_points", {"ids": deleted.points}, site=repo.site)
        return deleted.model_copy(update={"points_deleted": delete_points})

    async def run_backup_plan(self, name: str, full: bool = False, page_size: int | None = None) -> WorkflowHandle:
        """`page_size`: VMs per workflow run before the run continues as new (None: the default)."""
        await self.get_backup_plan(name)  # unknown plan: a clear error, no workflow
        return await self._start(BackupPlanRunWorkflow.run,
                                 PlanRunInput(plan=name, manual=True, full=full, page_size=page_size),
                                 plan_run_id(name),
                                 f"backup plan {name!r} is already running; a manual run never runs alongside it",
                                 f"manual {'full ' if full else ''}run of backup plan {name}", plan=name)

    async def plan_run_result(self, handle: WorkflowHandle) -> Any:
        """A plan run's result (backup or replication); a run that went in pages has its VMs'
        results read back from the catalog, a page at a time."""
        result = await self.result(handle)
        if result.paged:
            vms = await self.run_vms(handle.id, result.run_id)
            result = type(result).model_validate({**result.model_dump(mode="json"), "vms": vms})
        return result

    async def run_vms(self, workflow_id: str, run_id: str, failed_only: bool = False) -> list[dict[str, Any]]:
        """Every VM result of one plan run, from the catalog (admin op list_run_vms, paged)."""
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = await self.admin("list_run_vms", {"workflow_id": workflow_id, "run_id": run_id, "offset": offset,
                                                     "failed_only": failed_only})
            out += [r.result for r in page.rows]
            offset = page.next_offset
        return out

    # -- restore points and restore -----------------------------------------------------------

    async def list_restore_points(self, plan: str | None = None, vm: str | None = None) -> list[RestorePointSummary]:
        ref = None
        if vm:
            cluster, _, name = vm.partition("/")
            ref = {"cluster": cluster, "vm": name}
        return await self.admin("list_restore_points", {"plan": plan, "vm": ref})

    async def get_restore_point(self, point_id: str) -> RestorePointDetail:
        return await self.admin("get_restore_point", {"id": point_id})

    async def delete_restore_point(self, point_id: str) -> DeletedPoints:
        point = await self.get_restore_point(point_id)
        repo = next(r for r in await self.list_repositories() if r.name == point.repository)
        return await self.admin("delete_restore_points", {"ids": [point_id]}, site=repo.site)

    async def restore(self, request: RestoreRequest) -> WorkflowHandle:
        point = await self.get_restore_point(request.point_id)
        if why := unrestorable(point.id, point.state):  # refused at once; the workflow checks again
            raise (Damaged if point.state == PointState.DAMAGED else Invalid)(why)
        if request.target_cluster and request.target_cluster not in {c.name for c in await self.list_clusters()}:
            raise NotFound(f"cluster {request.target_cluster!r} not found")
        cluster = request.target_cluster or point.cluster
        vm = request.new_name or point.vm
        return await self._start(RestoreWorkflow.run, RestoreInput(request=request), restore_id(cluster, vm),
                                 f"a restore to {cluster}/{vm} is already running",
                                 f"{request.mode.value} restore of {point.cluster}/{point.vm} point {point.id} "
                                 f"to {cluster}/{vm}", plan=point.plan)

    async def restore_result(self, handle: WorkflowHandle) -> RestoreResult:
        return await self.result(handle)

    # -- replication ------------------------------------------------------------------------

    async def create_replication_plan(self, spec: ReplicationPlanSpec) -> ReplicationPlanSpec:
        await self.check_vms(spec.vms)  # before the plan exists: a plan over a missing VM is never created
        created = await self.admin("add_replication_plan", spec.model_dump(mode="json"))
        try:
            await schedules.upsert(self.client, spec)
        except Exception:
            await self.admin("delete_replication_plan", {"name": spec.name})
            raise
        return created

    async def update_replication_plan(self, spec: ReplicationPlanSpec) -> ReplicationPlanSpec:
        current = await self.get_replication_plan(spec.name)
        updated = await self.admin("update_replication_plan", spec.model_dump(mode="json"))
        await schedules.upsert(self.client, spec, paused=current.status != PlanStatus.WORKING)
        return updated

    async def get_replication_plan(self, name: str) -> ReplicationPlanView:
        return await self.admin("get_replication_plan", {"name": name})

    async def list_replication_plans(self) -> list[ReplicationPlanView]:
        return await self.admin("list_replication_plans")

    async def set_replication_plan_paused(self, name: str, paused: bool) -> ReplicationPlanView:
        status = PlanStatus.PAUSED if paused else PlanStatus.WORKING
        result = await self.admin("set_replication_plan_status", {"name": name, "status": status.value})
        await schedules.set_paused(self.client, name, paused, note=f"{status.value} by abdr", kind="replication")
        return result

    async def delete_replication_plan(self, name: str) -> DeletedPlan:
        await self.get_replication_plan(name)
        await schedules.delete(self.client, name, kind="replication")
        return await self.admin("delete_replication_plan", {"name": name})

    async def run_replication_plan(self, name: str, page_size: int | None = None) -> WorkflowHandle:
        """`page_size`: VMs per workflow run before the run continues as new (None: the default)."""
        await self.get_replication_plan(name)
        return await self._start(ReplicationPlanRunWorkflow.run,
                                 ReplicationRunInput(plan=name, manual=True, page_size=page_size),
                                 replication_run_id(name), f"replication plan {name!r} is already running",
                                 f"manual run of replication plan {name}", plan=name)

    async def list_replicas(self, plan: str | None = None) -> list[ReplicaView]:
        return await self.admin("list_replicas", {"plan": plan})

    async def replica_history(self, plan: str, vm: str, limit: int = 50, before: int | None = None) -> HistoryPage:
        """A page of a replica's state changes, newest first; pass `next_before` for the next."""
        return await self.admin("replica_history", {"plan": plan, "vm": vm, "limit": limit, "before": before})

    async def replica_points(self, plan: str, vm: str) -> list[RestorePointSummary]:
        """The points a failover of `vm`'s replica can go to (`--restore-point ID`), newest first."""
        return await self.admin("list_replica_points", {"plan": plan, "vm": vm})

    async def require_replica(self, plan: str, vm: str) -> ReplicaView:
        """The replica of `vm` in `plan`; NotFound for an unknown plan or VM, so a DR request
        naming nothing is refused at once instead of starting a workflow that fails later."""
        replica: ReplicaView = await self.admin("get_replica", {"plan": plan, "vm": vm})
        return replica

    async def _dr(self, workflow: Callable[[Any, Any], Awaitable[DrOperationResult]], req: Any,
                  what: str) -> WorkflowHandle[Any, DrOperationResult]:
        """Start a DR operation (`what`, as its summary says it) on the plan's VM."""
        await self.require_replica(req.plan, req.vm)
        return await self._start(workflow, req, dr_id(req.plan, req.vm),
                                 f"another disaster-recovery operation on {req.plan}/{req.vm} is running",
                                 f"{what} of {req.plan}/{req.vm}", plan=req.plan)

    async def failover(self, req: FailoverRequest) -> WorkflowHandle:
        return await self._dr(FailoverWorkflow.run, req, f"failover to point {req.point}")

    async def undo_failover(self, req: UndoFailoverRequest) -> WorkflowHandle:
        return await self._dr(UndoFailoverWorkflow.run, req, "undo failover")

    async def failback(self, req: FailbackRequest) -> WorkflowHandle:
        return await self._dr(FailbackWorkflow.run, req, "failback")

    async def permanent_failover(self, req: PermanentFailoverRequest) -> WorkflowHandle:
        return await self._dr(PermanentFailoverWorkflow.run, req,
                              "permanent failover" + (" with reprotect" if req.reprotect else ""))

    async def start_failover_test(self, req: FailoverTestRequest) -> WorkflowHandle:
        await self.require_replica(req.plan, req.vm)
        return await self._start(FailoverTestWorkflow.run, req, drill_id(req.plan, req.vm),
                                 f"a failover test of {req.plan}/{req.vm} is already running",
                                 f"failover test of {req.plan}/{req.vm} at point {req.point}", plan=req.plan)

    async def cleanup_failover_test(self, plan: str, vm: str) -> DrOperationResult:
        """End the running failover test of `vm`: its copy is deleted; what the test found."""
        handle = self.client.get_workflow_handle(drill_id(plan, vm), result_type=DrOperationResult)
        try:
            await handle.signal(FailoverTestWorkflow.cleanup)
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:  # none ever started, or it ended already
                raise NotFound(f"no failover test of {plan}/{vm} is running") from None
            raise
        return await self.result(handle)

    # -- jobs ---------------------------------------------------------------------------

    async def list_jobs(self, plan: str | None = None, limit: int = 50) -> list[Job]:
        jobs: list[Job] = await self.admin("list_jobs", {"plan": plan, "limit": limit})
        return [j.model_copy(update={"ui": self.ui_link(j.workflow_id, j.run_id)}) for j in jobs]

    async def _describe(self, workflow_id: str) -> tuple[WorkflowHandle, WorkflowExecutionDescription]:
        handle = self.client.get_workflow_handle(workflow_id)
        try:
            return handle, await handle.describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                raise NotFound(f"job {workflow_id!r} not found") from None
            raise

    async def cancel_job(self, workflow_id: str, wait: bool = False) -> JobDescription:
        """Ask a running job's workflow to cancel (its steps clean up after themselves, as at a
        window's end); with `wait`, until it has ended. The job as it is then; a job that
        ended already is a conflict."""
        handle, d = await self._describe(workflow_id)
        if d.status != WorkflowExecutionStatus.RUNNING:
            raise Conflict(f"job {workflow_id!r} is not running ({d.status.name if d.status else 'unknown'})")
        if d.workflow_type not in CANCELLABLE:
            raise Invalid(f"job {workflow_id!r} is a {d.workflow_type}, which does not clean up after a cancel; "
                          f"wait for it to end (only {', '.join(sorted(CANCELLABLE))} jobs can be cancelled)")
        await handle.cancel()
        if wait:
            try:
                await handle.result()
            except WorkflowFailureError:
                pass  # a cancelled run fails with the cancellation: describe_job says how it ended
        return await self.describe_job(workflow_id)

    async def describe_job(self, workflow_id: str) -> JobDescription:
        handle, d = await self._describe(workflow_id)
        out = JobDescription(workflow_id=workflow_id, run_id=d.run_id, type=d.workflow_type,
                             status=d.status.name if d.status else None, started_at=d.start_time,
                             ui=self.ui_link(workflow_id, d.run_id), closed_at=d.close_time)
        if d.status == WorkflowExecutionStatus.COMPLETED:
            out.result = await handle.result()
            if isinstance(out.result, dict) and out.result.get("paged"):
                out.result["vms"] = await self.run_vms(workflow_id, out.result["run_id"])
        elif d.status in job_ends.ENDS:  # ended otherwise: say how (the job list's words) and why
            ended = await job_ends.run_end(self.client, workflow_id, d.run_id)
            if ended is not None:
                out.status, out.error = ended[0].value, ended[1]
        elif d.status == WorkflowExecutionStatus.RUNNING and d.workflow_type == "BackupPlanRun":
            out.progress = await handle.query(BackupPlanRunWorkflow.progress)
        return out
