"""Catalog activities of replication (workflow queue: they work while a site is down):
resolve plans and objects, move objects through the replica state machine, record points."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import Client

from activities.errors import InvalidRequest, translate_errors
from drivers.catalog.errors import StateConflict
from drivers.catalog.store import AlreadyExists, Catalog, NotFound
from models.activity_api import ReplicationCatalogApi
from models.jobs import PlanResultInput
from models.plans import PlanStatus
from models.replication import IllegalTransition, ReplicaState, ReplicationObject, ReplicationPlanSpec
from models.replication_jobs import (
    Claim,
    HistoryPage,
    HistoryQuery,
    ObjectChange,
    ObjectRef,
    PointQuery,
    ReplicaCarryInput,
    ReplicaPoint,
    ReplicaPointRecord,
    ReplicationRunInput,
    ResolvedObject,
    ResolvedReplicationPlan,
)
from models.requests import LATEST, NOW
from models.restore_points import RestorePointSummary


def reverse_spec(spec: ReplicationPlanSpec, obj: ReplicationObject) -> ReplicationPlanSpec:
    """The reprotect plan: the old replica (now production) replicated back to the old site."""
    name = f"{spec.name}-rp-{obj.source.vm}"[:63]
    return spec.model_copy(update={
        "name": name, "description": f"reprotect of {obj.source} after permanent failover of plan {spec.name}",
        "source_site": spec.target_site, "source_cluster": spec.target_cluster, "target_site": spec.source_site,
        "target_cluster": spec.source_cluster, "vms": [obj.replica], "source_service": spec.target_service,
        "target_service": spec.source_service,
        "network_mapping": [m.model_copy(update={"source": m.target, "target": m.source}) for m in spec.network_mapping],
        "ip_mapping": [m.model_copy(update={"source_ip": m.target_ip, "target_ip": m.source_ip}) for m in spec.ip_mapping]})


class ReplicationCatalogActivities(ReplicationCatalogApi):
    def __init__(self, catalog: Catalog, client: Client | None = None) -> None:
        self.catalog = catalog
        self.client = client

    @activity.defn(name="create_reverse_plan")
    @translate_errors
    async def create_reverse_plan(self, ref: ObjectRef) -> str:
        """Create (idempotently) the reprotect plan and its schedule; returns its name."""
        from starter.runtime import schedules

        spec = self.catalog.get_replication_plan(ref.plan)
        obj = self.catalog.replication_object(ref.plan, ref.vm)
        reverse = reverse_spec(spec, obj)
        try:
            self.catalog.add_replication_plan(reverse, replicas={obj.replica.vm: obj.source})
        except AlreadyExists:
            pass
        if self.client is not None:
            await schedules.upsert(self.client, reverse)
        return reverse.name

    @activity.defn(name="resolve_replication_plan")
    @translate_errors
    def resolve_replication_plan(self, inp: ReplicationRunInput) -> ResolvedReplicationPlan:
        spec = self.catalog.get_replication_plan(inp.plan)
        status, _, _ = self.catalog.replication_plan_state(inp.plan)
        svc = self.catalog.site_replication_service(spec.target_site)
        objects, count = self.catalog.replication_objects(inp.plan), None
        if inp.page_size is not None:  # a page of a run that goes in pages: only it travels
            wanted = {v.vm for v in spec.vms}
            objects = [o for o in objects if o.source.vm in wanted]  # the order the run pages in
            count, start = len(objects), inp.page.offset if inp.page else 0
            objects = objects[start:start + inp.page_size]
            spec = spec.model_copy(update={"vms": [o.source for o in objects]})
        return ResolvedReplicationPlan(spec=spec, objects=objects, object_count=count,
                                       paused=status != PlanStatus.WORKING, max_jobs=svc.max_replication_jobs,
                                       bandwidth_mbps=svc.replication_bandwidth_mbps, max_retries=svc.max_retries,
                                       retry_interval_s=svc.retry_interval_s)

    @activity.defn(name="set_replication_plan_result")
    @translate_errors
    def set_replication_plan_result(self, inp: PlanResultInput) -> None:
        self.catalog.set_replication_plan_state(inp.plan, result=inp.result, run_at=inp.at)

    @activity.defn(name="get_replica")
    @translate_errors
    def get_replica(self, ref: ObjectRef) -> ResolvedObject:
        spec = self.catalog.get_replication_plan(ref.plan)
        svc = self.catalog.site_replication_service(spec.target_site)
        obj = self.catalog.replication_object(ref.plan, ref.vm)
        # the plan's settings, not its VM list: it would ride along in every DR step's history
        spec = spec.model_copy(update={"vms": [v for v in spec.vms if v.vm == ref.vm]})
        return ResolvedObject(spec=spec, obj=obj,
                              bandwidth_mbps=svc.replication_bandwidth_mbps,
                              failback_bandwidth_mbps=svc.failback_bandwidth_mbps)

    @activity.defn(name="change_replica")
    @translate_errors
    def change_replica(self, ch: ObjectChange) -> ReplicationObject:
        try:
            return self.catalog.change_replication_object(ch)
        except (IllegalTransition, ValueError) as e:
            raise InvalidRequest(str(e)) from None

    @activity.defn(name="release_batch_claims")
    @translate_errors
    def release_batch_claims(self, inp: ReplicaCarryInput) -> None:
        """Let go of every claim a failed replica batch may still hold (a worker killed with
        its retries spent runs no undo): a replica held by a batch nothing will finish
        would stay REPLICATING, and refuse every later run and failover. Compare-and-set on
        the owner: a replica someone else holds is not touched."""
        for item in inp.vms:
            try:
                obj = self.catalog.replication_object(inp.plan, item.vm)
            except NotFound:
                continue
            if obj.owner != item.owner:
                continue
            try:
                self.catalog.change_replication_object(ObjectChange(
                    plan=inp.plan, vm=item.vm, at=datetime.now(UTC), owner=item.owner, claim=Claim.RELEASE,
                    to=ReplicaState.READY if obj.state == ReplicaState.REPLICATING else None,
                    reason="no-change batch failed", change_id=f"{item.owner}/{item.point_id}/release-after-batch"))
            except StateConflict:  # let go meanwhile (its owner's own retry): nothing left to do
                continue

    @activity.defn(name="replica_history")
    @translate_errors
    def replica_history(self, q: HistoryQuery) -> HistoryPage:
        page, total = self.catalog.replica_history(q.plan, q.vm, q.limit, q.before)
        full = len(page) == q.limit  # there may be older entries: page on from the oldest seen
        return HistoryPage(entries=[c for _, c in page], total=total, next_before=page[-1][0] if full else None)

    @activity.defn(name="record_replica_point")
    @translate_errors
    def record_replica_point(self, r: ReplicaPointRecord) -> None:
        add_replica_point(self.catalog, r)

    @activity.defn(name="find_replica_point")
    @translate_errors
    def find_replica_point(self, q: PointQuery) -> ReplicaPoint:
        obj = self.catalog.replication_object(q.plan, q.vm)
        points = self.catalog.replica_points(q.plan, q.vm)
        if not points:
            raise InvalidRequest(f"replica {obj.replica} has no restore point yet: nothing to fail over to")
        chosen = points[-1]
        if q.point not in (LATEST, NOW):
            found = next((p for p in points if p.id == q.point), None)
            if found is None:
                raise InvalidRequest(f"restore point {q.point!r} is not a point of replica {obj.replica}")
            chosen = found
        return ReplicaPoint(point_id=chosen.id, snapshot_id=self.catalog.point_snapshot(chosen.id) or "")

    @activity.defn(name="exclude_from_plan")
    @translate_errors
    async def exclude_from_plan(self, ref: ObjectRef) -> None:
        """Permanent failover: the original leaves the plan (its object keeps its history).
        A plan left without VMs is STOPPED, and so is its schedule: paused, not deleted, so
        the Web UI still shows it and why (idempotent: pausing a paused schedule is no change)."""
        from starter.runtime import schedules

        try:
            spec = self.catalog.get_replication_plan(ref.plan)
        except NotFound:
            return  # the plan was deleted meanwhile: nothing left to leave
        keep = [v for v in spec.vms if v.vm != ref.vm]
        if keep:
            self.catalog.update_replication_plan(spec.model_copy(update={"vms": keep}))
            return
        self.catalog.set_replication_plan_state(ref.plan, status=PlanStatus.STOPPED)
        if self.client is not None:
            await schedules.pause_if_present(self.client, ref.plan, "replication",
                                             f"STOPPED: its last VM, {ref.vm}, was failed over permanently")


def add_replica_point(catalog: Catalog, r: ReplicaPointRecord) -> None:
    """A replica point's catalog row (idempotent: a retry records it once)."""
    catalog.add_restore_point(
        RestorePointSummary(id=r.point_id, plan=r.plan, cluster=r.replica.cluster, vm=r.replica.vm,
                            type=r.type, creation=r.creation, created_at=r.created_at,
                            logical_bytes=r.logical_bytes, stored_bytes=r.stored_bytes),
        snapshot_id=r.snapshot_id, vm_config=r.config)
