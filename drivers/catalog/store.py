"""The catalog store: typed reads and writes over the catalog tables. Takes and returns
the pydantic domain models; rows never leave this module except as those models."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, SQLModel, col, select

from drivers.catalog.engine import make_engine, migrate
from drivers.catalog.errors import (  # noqa: F401  (re-exported: callers import them from here)
    AlreadyExists,
    CatalogError,
    ConcurrentChange,
    InUse,
    NotFound,
    StateConflict,
)
from drivers.catalog.replicas import ReplicaObjects
from models.catalog import (
    AbandonedPointRow,
    BackupPlanRow,
    ClusterRow,
    JobRow,
    PlanRunVMRow,
    PlanVMRow,
    ReplicaChangeRow,
    ReplicationObjectRow,
    ReplicationPlanRow,
    RepositoryRow,
    RestorePointRow,
    ServiceRow,
    ServiceSlotRow,
    SiteRow,
    VMRow,
    utcnow,
)
from models.inventory import VM, Cluster, Site, VMConfig
from models.plans import BackupPlanSpec, PlanStatus, RunResult, VMRef
from models.replication import ReplicationPlanSpec
from models.restore_points import PointState, RestorePointSummary
from models.services import BackupService, ReplicationService, RepositorySpec, SlotLease, TransferKind

RowT = TypeVar("RowT", bound=SQLModel)
PlanRow = BackupPlanRow | ReplicationPlanRow


class Catalog(ReplicaObjects):
    def __init__(self, url: str, *, upgrade: bool = True) -> None:
        self.url = url
        if upgrade:
            migrate(url)
        self.engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s
            s.commit()

    def ping(self) -> None:
        with self.engine.connect() as c:
            c.execute(text("SELECT 1"))

    # -- generic helpers ---------------------------------------------------------------

    def _insert(self, row: SQLModel, what: str) -> None:
        try:
            with self.session() as s:
                s.add(row)
        except IntegrityError:
            raise AlreadyExists(f"{what} already exists") from None

    def _get(self, s: Session, model: type[RowT], key: Any, what: str) -> RowT:
        row = s.get(model, key)
        if row is None:
            raise NotFound(f"{what} not found")
        return row

    def _all(self, model: type[RowT], *where: Any, order: Any = None) -> Sequence[RowT]:
        with self.session() as s:
            q = select(model).where(*where)
            return s.exec(q.order_by(order) if order is not None else q).all()

    # -- sites, clusters, inventory cache ------------------------------------------------

    def add_site(self, site: Site) -> None:
        self._insert(SiteRow(**site.model_dump()), f"site {site.name!r}")

    def list_sites(self) -> list[Site]:
        return [Site(name=r.name, description=r.description, transport_url=r.transport_url)
                for r in self._all(SiteRow, order=SiteRow.name)]

    def get_site(self, name: str) -> Site:
        with self.session() as s:
            r = self._get(s, SiteRow, name, f"site {name!r}")
            return Site(name=r.name, description=r.description, transport_url=r.transport_url)

    def set_site_transport(self, name: str, url: str) -> None:
        """A site worker announces where it serves snapshot reads (creating the site if new)."""
        with self.session() as s:
            row = s.get(SiteRow, name) or SiteRow(name=name)
            row.transport_url = url
            s.add(row)

    def add_cluster(self, cluster: Cluster) -> None:
        with self.session() as s:
            self._get(s, SiteRow, cluster.site, f"site {cluster.site!r} (of cluster {cluster.name!r})")
        self._insert(ClusterRow(**cluster.model_dump()), f"cluster {cluster.name!r}")

    def get_cluster(self, name: str) -> Cluster:
        with self.session() as s:
            r = self._get(s, ClusterRow, name, f"cluster {name!r}")
            return Cluster(name=r.name, site=r.site, driver=r.driver, endpoint=r.endpoint)

    def list_clusters(self, site: str | None = None) -> list[Cluster]:
        where = [ClusterRow.site == site] if site else []
        rows = self._all(ClusterRow, *where, order=ClusterRow.name)
        return [Cluster(name=r.name, site=r.site, driver=r.driver, endpoint=r.endpoint) for r in rows]

    def cache_vms(self, cluster: str, vms: list[VM]) -> None:
        """Replace the cluster's inventory cache with what the driver reported."""
        now = utcnow()
        with self.session() as s:
            s.exec(delete(VMRow).where(col(VMRow.cluster) == cluster))
            for vm in vms:
                s.add(VMRow(cluster=cluster, name=vm.name, vm_id=vm.id, power_state=vm.power_state,
                            config=vm.config.model_dump(mode="json"), seen_at=now))

    def cached_vms(self, cluster: str) -> list[VM]:
        rows = self._all(VMRow, VMRow.cluster == cluster, order=VMRow.name)
        return [VM(id=r.vm_id, cluster=r.cluster, config=r.config, power_state=r.power_state) for r in rows]

    # -- repositories ----------------------------------------------------------------------

    def add_repository(self, repo: RepositorySpec) -> None:
        self._insert(RepositoryRow(**repo.model_dump()), f"repository {repo.name!r}")

    def get_repository(self, name: str) -> RepositorySpec:
        with self.session() as s:
            r = self._get(s, RepositoryRow, name, f"repository {name!r}")
            return RepositorySpec(name=r.name, kind=r.kind, path=r.path, site=r.site, description=r.description)

    def list_repositories(self) -> list[RepositorySpec]:
        rows = self._all(RepositoryRow, order=RepositoryRow.name)
        return [RepositorySpec(name=r.name, kind=r.kind, path=r.path, site=r.site, description=r.description)
                for r in rows]

    def delete_repository(self, name: str) -> None:
        users = [p.name for p in self.list_backup_plans() if p.repository == name]
        if users:
            raise InUse(f"repository {name!r} is used by backup plans {users}")
        with self.session() as s:
            s.delete(self._get(s, RepositoryRow, name, f"repository {name!r}"))

    # -- plans (backup and replication share the row shape) -------------------------------

    def _set_plan_vms(self, s: Session, kind: str, plan: str, vms: list[VMRef]) -> None:
        s.exec(delete(PlanVMRow).where(col(PlanVMRow.plan_kind) == kind, col(PlanVMRow.plan) == plan))
        for v in vms:
            s.add(PlanVMRow(plan_kind=kind, plan=plan, cluster=v.cluster, vm=v.vm))

    def add_backup_plan(self, spec: BackupPlanSpec) -> None:
        with self.session() as s:
            self._get(s, RepositoryRow, spec.repository, f"repository {spec.repository!r}")
        try:
            with self.session() as s:
                s.add(BackupPlanRow(name=spec.name, spec=spec.model_dump(mode="json")))
                s.flush()
                self._set_plan_vms(s, "backup", spec.name, spec.vms)
        except IntegrityError:
            raise AlreadyExists(f"backup plan {spec.name!r} already exists") from None

    def update_backup_plan(self, spec: BackupPlanSpec) -> None:
        with self.session() as s:
            self._get(s, RepositoryRow, spec.repository, f"repository {spec.repository!r}")
            row = self._get(s, BackupPlanRow, spec.name, f"backup plan {spec.name!r}")
            row.spec = spec.model_dump(mode="json")
            row.updated_at = utcnow()
            s.add(row)
            self._set_plan_vms(s, "backup", spec.name, spec.vms)

    def get_backup_plan(self, name: str) -> BackupPlanSpec:
        with self.session() as s:
            return BackupPlanSpec.model_validate(self._get(s, BackupPlanRow, name, f"backup plan {name!r}").spec)

    def _plan_state(self, model: type[PlanRow], what: str, name: str) -> tuple[PlanStatus, RunResult, datetime | None]:
        with self.session() as s:
            r = self._get(s, model, name, f"{what} {name!r}")
            return PlanStatus(r.status), RunResult(r.last_result), r.last_run_at

    def _set_plan_state(self, model: type[PlanRow], what: str, name: str, status: PlanStatus | None,
                        result: RunResult | None, run_at: datetime | None) -> None:
        with self.session() as s:
            r = self._get(s, model, name, f"{what} {name!r}")
            r.status = status or r.status
            r.last_result = result or r.last_result
            r.last_run_at = run_at or r.last_run_at
            r.updated_at = utcnow()
            s.add(r)

    def backup_plan_state(self, name: str) -> tuple[PlanStatus, RunResult, datetime | None]:
        return self._plan_state(BackupPlanRow, "backup plan", name)

    def set_backup_plan_state(self, name: str, status: PlanStatus | None = None,
                              result: RunResult | None = None, run_at: datetime | None = None) -> None:
        self._set_plan_state(BackupPlanRow, "backup plan", name, status, result, run_at)

    def list_backup_plans(self) -> list[BackupPlanSpec]:
        return [BackupPlanSpec.model_validate(r.spec) for r in self._all(BackupPlanRow, order=BackupPlanRow.name)]

    def delete_backup_plan(self, name: str) -> None:
        with self.session() as s:
            s.delete(self._get(s, BackupPlanRow, name, f"backup plan {name!r}"))
            self._set_plan_vms(s, "backup", name, [])

    def plans_protecting(self, vm: VMRef) -> list[tuple[str, str]]:
        rows = self._all(PlanVMRow, PlanVMRow.cluster == vm.cluster, PlanVMRow.vm == vm.vm)
        return [(r.plan_kind, r.plan) for r in rows]

    def add_replication_plan(self, spec: ReplicationPlanSpec, replicas: dict[str, VMRef] | None = None) -> None:
        """`replicas` names a VM's replica explicitly (reprotect: the old original), else
        the plan's naming rule does."""
        replicas = replicas or {}
        try:
            with self.session() as s:
                s.add(ReplicationPlanRow(name=spec.name, spec=spec.model_dump(mode="json")))
                s.flush()
                self._set_plan_vms(s, "replication", spec.name, spec.vms)
                for v in spec.vms:
                    s.add(ReplicationObjectRow(
                        plan=spec.name, source_cluster=v.cluster, source_vm=v.vm,
                        replica_cluster=spec.target_cluster,
                        replica_vm=replicas[v.vm].vm if v.vm in replicas else spec.naming.replica_name(v.vm)))
        except IntegrityError:
            raise AlreadyExists(f"replication plan {spec.name!r} already exists") from None

    def get_replication_plan(self, name: str) -> ReplicationPlanSpec:
        with self.session() as s:
            row = self._get(s, ReplicationPlanRow, name, f"replication plan {name!r}")
            return ReplicationPlanSpec.model_validate(row.spec)

    def list_replication_plans(self) -> list[ReplicationPlanSpec]:
        rows = self._all(ReplicationPlanRow, order=ReplicationPlanRow.name)
        return [ReplicationPlanSpec.model_validate(r.spec) for r in rows]

    # -- replication objects ------------------------------------------------------------

    # -- restore points -----------------------------------------------------------------

    def add_restore_point(self, point: RestorePointSummary, base_id: str | None = None,
                          snapshot_id: str | None = None, vm_config: VMConfig | None = None) -> None:
        """Idempotent: recording the same point twice (an activity retry) is not an error. An
        abandoned id (`abandon_point`) is refused with StateConflict, recording nothing."""
        with self.session() as s:
            if s.get(RestorePointRow, point.id) is None:
                s.add(RestorePointRow(**point.model_dump(), base_id=base_id, snapshot_id=snapshot_id,
                                      vm_config=vm_config.model_dump(mode="json") if vm_config else {}))
                s.flush()  # takes the id; an abandon of it at the same moment commits first or fails
                if s.get(AbandonedPointRow, point.id) is not None:  # read after the id was ours
                    raise StateConflict(f"restore point {point.id!r} was abandoned (its backup gave up before "
                                        "recording it, and its files are deleted): not recorded")

    def abandon_point(self, point: RestorePointSummary) -> bool:
        """Compare-and-set for a backup that gave up after its transfer: True when the catalog
        has not recorded `point` and now never will (`add_restore_point` refuses the id), so
        its files and snapshot may go; False when it is recorded (keep everything: it is a
        real point). A record of the same id at the same moment is serialised by the id's
        primary key in restore_points: this takes the id with a placeholder row, swaps it for
        the tombstone in one transaction, and a record waiting on the id then finds the
        tombstone; a record that got the id first makes this fail and answer False."""
        try:
            with self.session() as s:
                if s.get(AbandonedPointRow, point.id) is not None:
                    return True  # a retry of an abandon that committed
                if s.get(RestorePointRow, point.id) is not None:
                    return False
                placeholder = RestorePointRow(**{**point.model_dump(), "state": PointState.DELETING})
                s.add(placeholder)
                s.flush()
                s.add(AbandonedPointRow(id=point.id, abandoned_at=utcnow()))
                s.delete(placeholder)
            return True
        except IntegrityError:
            return False  # recorded at the same moment

    def point_config(self, point_id: str) -> VMConfig:
        with self.session() as s:
            row = self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}")
            return VMConfig.model_validate(row.vm_config)

    def backup_base(self, vm: VMRef, plan: str | None = None) -> tuple[str, str] | None:
        """(point id, snapshot id) of the VM's newest ready point whose snapshot is kept:
        what an incremental backup (or an in-place restore) builds on."""
        with self.session() as s:
            q = select(RestorePointRow).where(
                RestorePointRow.cluster == vm.cluster, RestorePointRow.vm == vm.vm,
                col(RestorePointRow.snapshot_id).is_not(None), RestorePointRow.state == PointState.READY)
            if plan is not None:
                q = q.where(RestorePointRow.plan == plan)
            row = s.exec(q.order_by(col(RestorePointRow.created_at).desc())).first()
            # The query keeps only rows with a snapshot.
            return (row.id, row.snapshot_id) if row and row.snapshot_id else None

    def point_snapshot(self, point_id: str) -> str | None:
        with self.session() as s:
            return self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}").snapshot_id

    def point_links(self, point_id: str) -> tuple[str | None, str | None] | None:
        """(base point id, snapshot id) of a recorded point; None when it is not recorded."""
        with self.session() as s:
            row = s.get(RestorePointRow, point_id)
            return (row.base_id, row.snapshot_id) if row is not None else None

    def snapshot_users(self, point_id: str) -> list[str]:
        """The other points of the same VM that name this point's snapshot (between a backup's
        record and its hand-over, the new point and its base both do)."""
        with self.session() as s:
            row = self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}")
            if row.snapshot_id is None:
                return []
            q = select(RestorePointRow.id).where(
                RestorePointRow.cluster == row.cluster, RestorePointRow.vm == row.vm,
                RestorePointRow.snapshot_id == row.snapshot_id, RestorePointRow.id != point_id)
            return list(s.exec(q))

    def release_point_snapshot(self, point_id: str) -> None:
        with self.session() as s:
            row = s.get(RestorePointRow, point_id)
            if row is not None:
                row.snapshot_id = None
                s.add(row)

    def set_point_state(self, point_id: str, state: PointState) -> None:
        with self.session() as s:
            row = self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}")
            row.state = state
            s.add(row)

    def change_point_state(self, point_id: str, expected: set[PointState], state: PointState) -> bool:
        """Compare-and-set in one UPDATE: `state` only if the point is in one of `expected`
        now (e.g. verify marks READY -> DAMAGED, never a point a delete made DELETING)."""
        with self.session() as s:
            res = s.exec(update(RestorePointRow)
                         .where(col(RestorePointRow.id) == point_id, col(RestorePointRow.state).in_(list(expected)))
                         .values(state=state))
            return bool(res.rowcount)

    def point_states(self, repository: str) -> dict[str, PointState]:
        """Id -> state of every catalog point in `repository` (two columns, no summaries)."""
        with self.session() as s:
            rows = s.exec(select(RestorePointRow.id, RestorePointRow.state)
                          .where(RestorePointRow.repository == repository)).all()
            return {pid: PointState(state) for pid, state in rows}

    # -- services -------------------------------------------------------------------------

    def put_service(self, service: BackupService | ReplicationService) -> None:
        kind = "backup" if isinstance(service, BackupService) else "replication"
        with self.session() as s:
            row = s.get(ServiceRow, (kind, service.name)) or ServiceRow(kind=kind, name=service.name,
                                                                         site=service.site, spec={})
            row.site, row.spec = service.site, service.model_dump(mode="json")
            s.add(row)

    def list_services(self, site: str | None = None) -> tuple[list[BackupService], list[ReplicationService]]:
        """The configured services (of one site, or all), by name: (backup, replication)."""
        rows = self._all(ServiceRow, *([ServiceRow.site == site] if site else []), order=ServiceRow.name)
        return ([BackupService.model_validate(r.spec) for r in rows if r.kind == "backup"],
                [ReplicationService.model_validate(r.spec) for r in rows if r.kind == "replication"])

    def site_backup_service(self, site: str) -> BackupService:
        """The backup service of a site (the first configured, else one with the defaults)."""
        rows = self._all(ServiceRow, ServiceRow.kind == "backup", ServiceRow.site == site, order=ServiceRow.name)
        return BackupService.model_validate(rows[0].spec) if rows else BackupService(name=site, site=site)

    def site_replication_service(self, site: str) -> ReplicationService:
        rows = self._all(ServiceRow, ServiceRow.kind == "replication", ServiceRow.site == site, order=ServiceRow.name)
        return ReplicationService.model_validate(rows[0].spec) if rows else ReplicationService(name=site, site=site)

    def set_replication_plan_state(self, name: str, status: PlanStatus | None = None,
                                   result: RunResult | None = None, run_at: datetime | None = None) -> None:
        self._set_plan_state(ReplicationPlanRow, "replication plan", name, status, result, run_at)

    def replication_plan_state(self, name: str) -> tuple[PlanStatus, RunResult, datetime | None]:
        return self._plan_state(ReplicationPlanRow, "replication plan", name)

    def update_replication_plan(self, spec: ReplicationPlanSpec) -> None:
        """New settings; objects are added for new VMs and kept (with their history) for old ones."""
        with self.session() as s:
            row = self._get(s, ReplicationPlanRow, spec.name, f"replication plan {spec.name!r}")
            row.spec = spec.model_dump(mode="json")
            row.updated_at = utcnow()
            s.add(row)
            self._set_plan_vms(s, "replication", spec.name, spec.vms)
            for v in spec.vms:
                if s.get(ReplicationObjectRow, (spec.name, v.cluster, v.vm)) is None:
                    s.add(ReplicationObjectRow(plan=spec.name, source_cluster=v.cluster, source_vm=v.vm,
                                               replica_cluster=spec.target_cluster,
                                               replica_vm=spec.naming.replica_name(v.vm)))

    def delete_replication_plan(self, name: str) -> None:
        with self.session() as s:
            for row in s.exec(select(ReplicationObjectRow).where(ReplicationObjectRow.plan == name)).all():
                s.delete(row)
            s.execute(delete(ReplicaChangeRow).where(col(ReplicaChangeRow.plan) == name))
            s.flush()
            s.delete(self._get(s, ReplicationPlanRow, name, f"replication plan {name!r}"))
            self._set_plan_vms(s, "replication", name, [])

    def backup_service(self, name: str, site: str) -> BackupService:
        """The named backup service's limits; an unconfigured service has the defaults."""
        with self.session() as s:
            row = s.get(ServiceRow, ("backup", name))
            return BackupService.model_validate(row.spec) if row else BackupService(name=name, site=site)

    def get_restore_point(self, point_id: str) -> RestorePointSummary:
        with self.session() as s:
            return self._summary(self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}"))

    def list_restore_points(self, plan: str | None = None, vm: VMRef | None = None) -> list[RestorePointSummary]:
        where: list[Any] = []
        if plan:
            where.append(RestorePointRow.plan == plan)
        if vm:
            where += [RestorePointRow.cluster == vm.cluster, RestorePointRow.vm == vm.vm]
        return [self._summary(r) for r in self._all(RestorePointRow, *where, order=RestorePointRow.created_at)]

    def replica_points(self, plan: str, vm: str) -> list[RestorePointSummary]:
        """The points of the replica of `vm` in `plan` that a failover can use (their snapshot
        is kept on the replica), oldest first."""
        replica = self.replication_object(plan, vm).replica  # NotFound names the plan and VM
        return [self._summary(r) for r in self._all(
            RestorePointRow, RestorePointRow.plan == plan, RestorePointRow.cluster == replica.cluster,
            RestorePointRow.vm == replica.vm, col(RestorePointRow.snapshot_id).is_not(None),
            order=RestorePointRow.created_at)]

    def delete_restore_point(self, point_id: str) -> None:
        with self.session() as s:
            s.delete(self._get(s, RestorePointRow, point_id, f"restore point {point_id!r}"))

    @staticmethod
    def _summary(r: RestorePointRow) -> RestorePointSummary:
        fields = RestorePointSummary.model_fields
        return RestorePointSummary.model_validate({k: getattr(r, k) for k in fields})

    # -- jobs ---------------------------------------------------------------------------

    def record_job(self, workflow_id: str, run_id: str, operation: str, status: str,
                   plan: str | None = None, vm: str | None = None, result: dict | None = None,
                   finished: bool = False) -> None:
        """Create or update the job row of one workflow run (idempotent under retries). An
        ended row is final: the update is a compare-and-set on `finished_at IS NULL`, so a
        late retry of a run's write never overwrites the end `end_job` recorded."""
        with self.session() as s:
            if s.get(JobRow, (workflow_id, run_id)) is None:
                s.add(JobRow(workflow_id=workflow_id, run_id=run_id, operation=operation, plan=plan, vm=vm,
                             status=status, result=result or {}, finished_at=utcnow() if finished else None))
                return
            values: dict[str, Any] = {"status": status}
            if result is not None:
                values["result"] = result
            if finished:
                values["finished_at"] = utcnow()
            s.exec(update(JobRow).where(*self._unfinished_job(workflow_id, run_id)).values(**values))

    def end_job(self, workflow_id: str, run_id: str, status: str, error: str = "") -> bool:
        """Compare-and-set: an unfinished job row (RUNNING, or a drill's UNHEALTHY) takes the
        end Temporal recorded for its run; False if the row had ended already (or is unknown)."""
        with self.session() as s:
            row = s.get(JobRow, (workflow_id, run_id))
            if row is None or row.finished_at is not None:
                return False
            result = {**row.result, "error": error} if error else row.result
            done = s.exec(update(JobRow).where(*self._unfinished_job(workflow_id, run_id))
                          .values(status=status, finished_at=utcnow(), result=result))
            return bool(done.rowcount)

    @staticmethod
    def _unfinished_job(workflow_id: str, run_id: str) -> tuple[Any, ...]:
        return (col(JobRow.workflow_id) == workflow_id, col(JobRow.run_id) == run_id,
                col(JobRow.finished_at).is_(None))

    def list_jobs(self, plan: str | None = None, limit: int = 50) -> list[JobRow]:
        with self.session() as s:
            q = select(JobRow)
            if plan:
                q = q.where(JobRow.plan == plan)
            rows = s.exec(q.order_by(col(JobRow.started_at).desc()).limit(limit)).all()
            return [JobRow.model_validate(r) for r in rows]

    # -- per-VM results of plan runs (models/plan_pages.py) -----------------------------

    def put_run_vms(self, workflow_id: str, run_id: str, plan: str, rows: list[tuple[int, str, bool, dict]]) -> None:
        """Write a batch of one run's VM results (index, vm, ok, result); a retried batch
        replaces its rows (same keys), never adds to them."""
        with self.session() as s:
            for index, vm, ok, result in rows:
                s.merge(PlanRunVMRow(workflow_id=workflow_id, run_id=run_id, index=index, plan=plan, vm=vm, ok=ok,
                                     result=result))

    def run_vms(self, workflow_id: str, run_id: str, offset: int, limit: int,
                failed_only: bool = False) -> tuple[list[PlanRunVMRow], int]:
        """A page of one run's VM results in the run's order, and how many there are."""
        where = [col(PlanRunVMRow.workflow_id) == workflow_id, col(PlanRunVMRow.run_id) == run_id]
        if failed_only:
            where.append(col(PlanRunVMRow.ok).is_(False))
        with self.session() as s:
            total = s.exec(select(func.count()).select_from(PlanRunVMRow).where(*where)).one()
            rows = s.exec(select(PlanRunVMRow).where(*where).order_by(col(PlanRunVMRow.index))
                          .offset(offset).limit(limit)).all()
            return [PlanRunVMRow.model_validate(r) for r in rows], int(total)

    # -- service slots: leases that hold a service's limits across plans and runs --------

    def acquire_slot(self, kind: TransferKind, service: str, limit: int, holder: str, attempt: int,
                     ttl_s: float, now: datetime | None = None) -> int | None:
        """Take one of the service's `limit` slots of `kind` for `holder`; None while all
        are held by live leases. Idempotent: a holder that has a slot keeps it (a retried
        activity, a later attempt, takes its own lease over). Safe against concurrent
        acquirers on any database: slots are numbered 0..limit-1 and the primary key
        refuses a second row per slot; an expired lease is taken over by compare-and-set."""
        now = now or utcnow()
        expires = now + timedelta(seconds=ttl_s)
        key = (col(ServiceSlotRow.kind) == kind, col(ServiceSlotRow.service) == service)
        try:
            with self.session() as s:
                rows = s.exec(select(ServiceSlotRow).where(*key)).all()
                mine = next((r for r in rows if r.holder == holder), None)
                if mine is not None:
                    if mine.attempt > attempt:
                        return None  # a newer attempt of this activity holds it
                    mine.attempt, mine.expires_at = attempt, expires
                    s.add(mine)
                    return mine.slot
                live = {r.slot for r in rows if r.expires_at > now}
                if len(live) >= limit:
                    return None
                free = next(i for i in range(limit) if i not in live)
                stale = next((r for r in rows if r.slot == free), None)
                if stale is None:
                    s.add(ServiceSlotRow(kind=kind, service=service, slot=free, holder=holder, attempt=attempt,
                                         acquired_at=now, expires_at=expires))
                    s.flush()
                    return free
                taken = s.exec(update(ServiceSlotRow).where(
                    *key, col(ServiceSlotRow.slot) == free, col(ServiceSlotRow.holder) == stale.holder,
                    col(ServiceSlotRow.expires_at) <= now).values(holder=holder, attempt=attempt, acquired_at=now,
                                                             expires_at=expires))
                return free if taken.rowcount == 1 else None
        except (IntegrityError, OperationalError):
            return None  # another acquirer took that slot at the same moment (or held the lock): try again

    def renew_slot(self, kind: TransferKind, service: str, holder: str, attempt: int, ttl_s: float,
                   now: datetime | None = None) -> bool:
        """Extend the holder's lease; False if it is no longer this attempt's (expired and
        taken over, or a newer attempt of the activity holds it)."""
        now = now or utcnow()
        with self.session() as s:
            done = s.exec(update(ServiceSlotRow).where(
                col(ServiceSlotRow.kind) == kind, col(ServiceSlotRow.service) == service, col(ServiceSlotRow.holder) == holder,
                col(ServiceSlotRow.attempt) == attempt).values(expires_at=now + timedelta(seconds=ttl_s)))
            return bool(done.rowcount)

    def release_slot(self, kind: TransferKind, service: str, holder: str, attempt: int) -> None:
        """Give the slot back (only this attempt's lease: an older attempt never frees a newer one's)."""
        with self.session() as s:
            s.exec(delete(ServiceSlotRow).where(
                col(ServiceSlotRow.kind) == kind, col(ServiceSlotRow.service) == service, col(ServiceSlotRow.holder) == holder,
                col(ServiceSlotRow.attempt) == attempt))

    def slot_leases(self, kind: TransferKind | None = None, service: str | None = None,
                    now: datetime | None = None) -> list[SlotLease]:
        """The live leases (expired ones are free), by kind, service and slot."""
        now = now or utcnow()
        where: list[Any] = [ServiceSlotRow.expires_at > now]
        if kind is not None:
            where.append(ServiceSlotRow.kind == kind)
        if service is not None:
            where.append(ServiceSlotRow.service == service)
        rows = self._all(ServiceSlotRow, *where, order=ServiceSlotRow.slot)
        return [SlotLease.model_validate(r, from_attributes=True)
                for r in sorted(rows, key=lambda r: (r.kind, r.service, r.slot))]
