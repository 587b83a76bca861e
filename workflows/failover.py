"""Failover and undo-failover of one replicated VM. Runs on the target site's worker and
the central catalog, so it works with the source site down; with the source up it fences
the source first. Never two running copies: the source is checked right before the
replica starts. Workflow id `dr/<plan>/<vm>`: one DR operation per VM at a time.

Runbook (docs/operations.md): validate -> claim the replica -> fence the source -> final
sync (point `now`) -> check the source -> roll the replica back to the point -> FAILOVER ->
check the source again -> power the replica on -> let go. A failure undoes what was done:
the replica goes back to its newest point, a source abdr stopped is powered on again, and
the claim is released with the state the replica really has."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ReplicationCatalogApi
    from models.ids import replicate_id
    from models.inventory import ShutdownMode
    from models.jobs import Operation
    from models.replication import ReplicaState
    from models.replication_jobs import (
        DrOperationResult,
        ObjectRef,
        PointQuery,
        PowerStateReply,
        ReplicaPoint,
        ReplicateInput,
        ReplicateResult,
        ResolvedObject,
        VMAt,
    )
    from models.requests import LATEST, NOW, FailoverRequest, UndoFailoverRequest
    from models.restore_points import PointCreation

from workflows import v1
from workflows.backup import failure_text
from workflows.common import catalog, phase, record_job, tag
from workflows.replica_state import claim_or_refuse, hold, me, release, require_state
from workflows.replication import ReplicateWorkflow
from workflows.sites import Sites, refuse

FAILOVER_FROM = (ReplicaState.READY, ReplicaState.FAILOVER_TEST)
# Runs started from here record their RUNNING job inside the undo's reach (a catalog failure
# there lets the claim go) and read the replica's power before the undo restarts the source.
# Runs recorded before keep their order (replay).
FAILOVER_UNDO = "failover-undo-reads-replica"
FENCE_COUNTS_SHUTDOWN = "fence-counts-the-shutdown"
# Runs from here ask the target site for the replica before the claim, so a failover whose
# replica cannot be reached or is gone stops nothing (production stays up); runs recorded
# before went straight to the claim and replay so.
TARGET_FIRST = "failover-checks-the-target-first"


async def find_point(plan: str, vm: str, point: str) -> ReplicaPoint:
    return await catalog(ReplicationCatalogApi.find_replica_point, PointQuery(plan=plan, vm=vm, point=point))


async def ensure_source_stopped(sites: Sites, r: ResolvedObject) -> str:
    """Refuse unless the source VM is known not to run (stopped, absent) or its site does
    not answer (an unplanned failover); returns what was found, for the record."""
    if not r.obj.source_vm_id:
        return "never replicated from a known VM id"
    src: PowerStateReply = await sites.probe(r.spec.source_site, VMAt(cluster=r.spec.source_cluster,
                                                                      vm_id=r.obj.source_vm_id))
    if src.reachable and src.state == "RUNNING":
        raise refuse(f"the source VM {r.obj.source} is running; stop it or choose a source_shutdown mode "
                     "(two running copies of one VM are never allowed)", "SourceRunning")
    return src.state.lower() if src.reachable else "unreachable (not fenced)"


@workflow.defn(name="Failover")
class FailoverWorkflow:
    @workflow.run
    async def run(self, req: FailoverRequest) -> DrOperationResult:
        sites = Sites()
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.failover(req, r, sites, ReplicateWorkflow.run, replicate_id)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="check")
        if obj.owner:
            raise refuse(f"failover of {obj.source} refused, nothing was changed: its replica is busy: "
                         f"{obj.owner} holds it (wait for it to end, or cancel it)", "StateConflict")
        require_state(obj, FAILOVER_FROM, "fail over")
        point = None if req.point == NOW else await find_point(req.plan, req.vm, req.point)
        if workflow.patched(TARGET_FIRST):
            await self.check_target(sites, r)
        obj = await claim_or_refuse(obj, FAILOVER_FROM, "failover", reason=f"failover to {req.point}")
        careful = workflow.patched(FAILOVER_UNDO)
        if not careful:
            await record_job(Operation.FAILOVER, "RUNNING", plan=req.plan, vm=req.vm)
        source = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        details: dict = {}
        stopped_source = rolled_back = switched = False
        try:
            if careful:
                await record_job(Operation.FAILOVER, "RUNNING", plan=req.plan, vm=req.vm)
            if req.source_shutdown != ShutdownMode.NONE:
                phase("fence-source", f"{req.source_shutdown} {obj.source}")
                stopped_source = await self.fence(sites, r, req)
                details["source"] = f"stopped ({req.source_shutdown})"
            if point is None:
                phase("final-sync", f"{obj.source} -> {obj.replica}")
                synced: ReplicateResult = await workflow.execute_child_workflow(
                    ReplicateWorkflow.run, ReplicateInput(
                        spec=spec, vm=req.vm, creation=PointCreation.FAILOVER, claimed_by=me(),
                        bandwidth_mbps=r.bandwidth_mbps,  # the replication service's limit holds here too
                        point_id=f"{req.vm}.fo{workflow.now():%Y%m%dT%H%M%SZ}"),
                    id=f"{replicate_id(spec.name, req.vm)}/final-sync",
                    static_summary=f"final sync of {obj.source} before its failover")
                point = await find_point(req.plan, req.vm, synced.point_id or "")
                details["final_sync_bytes"] = synced.moved_bytes
            details.setdefault("source", await ensure_source_stopped(sites, r))
            phase("rollback", f"{obj.replica} -> point {point.point_id}")
            await sites.power(spec.target_site, replica, on=False)
            rolled_back = True
            await sites.rollback(spec.target_site, replica, point.snapshot_id)
            # From here the replica's changes are tracked against the point's snapshot (failback).
            obj = await hold(req.plan, req.vm, ReplicaState.FAILOVER, f"failover to {point.point_id}",
                             failover_snapshot=point.snapshot_id)
            switched = True
            if req.power_on:
                phase("power-on", str(obj.replica))
                await ensure_source_stopped(sites, r)
                await sites.power(spec.target_site, replica, on=True)
        except BaseException as e:
            await self.undo(sites, r, req, source, replica, stopped_source, rolled_back, switched, failure_text(e),
                            careful)
            raise
        obj = await release(req.plan, req.vm, reason="failover done")
        result = DrOperationResult(operation="failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   point_id=point.point_id, details=details)
        await record_job(Operation.FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        phase("done", f"{obj.replica} serves at point {point.point_id}")
        return result

    @staticmethod
    async def check_target(sites: Sites, r: ResolvedObject) -> None:
        """Refuse unless the target site answers and has the replica: validated before the
        first side effect, since fencing the source for a replica nobody can start takes
        production down for nothing."""
        at = VMAt(cluster=r.spec.target_cluster, vm_id=r.obj.replica_vm_id or "")
        found: PowerStateReply = await sites.probe(r.spec.target_site, at)
        site = r.spec.target_site
        if not found.reachable and r.spec.source_site == site:
            # Both clusters answer to the site's one AOC: with it down nothing can start the
            # replica (the product: an intra-site plan cannot fail over while its AOC is down).
            why = (f"the AOC managing site {site} does not answer ({found.detail})" if found.detail else
                   f"site {site} does not answer (neither its AOC nor abdr's worker there could be asked)")
            raise refuse(f"intra-site failover of {r.obj.source} is not possible, nothing was changed: {why}; "
                         f"that AOC manages both {r.spec.source_cluster} and {r.spec.target_cluster}, so an "
                         "intra-site plan cannot fail over while it is down (a cross-site plan can): fail over "
                         "once it answers again", "TargetUnreachable")
        if not found.reachable:
            raise refuse(f"failover of {r.obj.source} refused, nothing was changed: the target site "
                         f"{r.spec.target_site} does not answer, so its replica {r.obj.replica} cannot be started",
                         "TargetUnreachable")
        if found.state == "ABSENT":
            raise refuse(f"failover of {r.obj.source} refused, nothing was changed: its replica {r.obj.replica} "
                         f"is not on cluster {r.spec.target_cluster} of site {r.spec.target_site}", "NotFound")

    @staticmethod
    async def fence(sites: Sites, r: ResolvedObject, req: FailoverRequest) -> bool:
        """Stop the source; True when abdr stopped a running VM (compensation restarts it)."""
        at = VMAt(cluster=r.spec.source_cluster, vm_id=r.obj.source_vm_id or "")
        try:
            before: PowerStateReply = await sites.probe(r.spec.source_site, at)
            after = await sites.shutdown(r.spec.source_site, at, req.source_shutdown, req.shutdown_timeout_s)
        except ActivityError as e:
            raise refuse(f"failover aborted: the source VM {r.obj.source} could not be stopped "
                         f"({req.source_shutdown}): {e.cause or e}", "SourceNotStopped") from None
        ran = before.reachable and before.state == "RUNNING"
        # The shutdown says itself whether it stopped a running VM: a probe that went unanswered
        # must not keep the undo from restarting it (runs recorded before replay without this).
        return (ran or after.stopped) if workflow.patched(FENCE_COUNTS_SHUTDOWN) else ran

    @staticmethod
    async def undo(sites: Sites, r: ResolvedObject, req: FailoverRequest, source: VMAt, replica: VMAt,
                   stopped_source: bool, rolled_back: bool, switched: bool, why: str,
                   careful: bool = False) -> None:
        """Compensation: exactly what was done, undone; the claim let go with the truth."""
        phase("undo", why)
        if rolled_back:
            # The replica's live disk must equal its newest point again: replication goes on from it.
            await sites.power(r.spec.target_site, replica, on=False)
            newest = await find_point(req.plan, req.vm, LATEST)
            await sites.rollback(r.spec.target_site, replica, newest.snapshot_id)
        if stopped_source:
            # Two running copies are never allowed: a replica that runs (it could not be
            # stopped) keeps the source stopped, and the reason says so.
            if not (careful and await sites.known_running(r.spec.target_site, replica)):
                await sites.power(r.spec.source_site, source, on=True)
            else:
                why = f"{why}; the replica {r.obj.replica} still runs, so the source stays stopped"
        refs = {"failover_snapshot": None} if switched else {}
        await release(req.plan, req.vm, ReplicaState.READY if switched else None,
                      f"failover failed, undone: {why}"[:1000], **refs)
        await record_job(Operation.FAILOVER, "FAILED", plan=req.plan, vm=req.vm, result={"error": why},
                         finished=True)


@workflow.defn(name="UndoFailover")
class UndoFailoverWorkflow:
    """The replica returns to the newest replicated point (the base replication continues
    from); what it did during the failover is discarded."""

    @workflow.run
    async def run(self, req: UndoFailoverRequest) -> DrOperationResult:
        sites = Sites()
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.undo_failover(req, r, sites)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="undo")
        require_state(obj, [ReplicaState.FAILOVER], "undo the failover of")
        point = await find_point(req.plan, req.vm, obj.replica_point or "")
        await claim_or_refuse(obj, [ReplicaState.FAILOVER], "undo failover")
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        try:
            await sites.power(spec.target_site, replica, on=False)
            await sites.rollback(spec.target_site, replica, point.snapshot_id)
        except BaseException as e:
            # The replica may be stopped now; it still holds what it served (rollback is all or nothing).
            await release(req.plan, req.vm, reason=f"undo failed, replica left stopped: {failure_text(e)}"[:1000])
            raise
        obj = await release(req.plan, req.vm, ReplicaState.READY, "failover undone", failover_snapshot=None)
        result = DrOperationResult(operation="undo_failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   point_id=point.point_id)
        await record_job(Operation.FAILOVER, "UNDONE", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        return result

