"""Failback and permanent failover.

Failback brings the original VM to exactly the replica's state by moving only the extents
the replica changed since failover plus those the original changed after its last
replicated snapshot: a pre-sync while the replica still serves, then a short final sync
with the replica stopped; then the original starts and replication resumes in the
original direction from the new base pair (original snapshot, FAILBACK replica point).
The source site's worker does the writing (the source replication service's role).

A failure before the switch undoes exactly what was done: the replica is powered on again
if failback stopped it, the failback snapshots are dropped, and the replica keeps serving
(FAILOVER). The original, never started, is re-synced by the next failback."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ReplicationCatalogApi
    from models.inventory import ShutdownMode
    from models.jobs import Operation, SnapshotRef
    from models.replication import ReplicaState
    from models.replication_jobs import (
        DrOperationResult,
        ObjectRef,
        PowerStateReply,
        PullInput,
        PullResult,
        ReplicaPointRecord,
        ResolvedObject,
        VMAt,
    )
    from models.requests import FailbackRequest, PermanentFailoverRequest
    from models.restore_points import PointCreation
    from models.services import TransferKind

from workflows import v1
from workflows.backup import failure_text
from workflows.common import CATALOG_RETRY, UNTIL_DONE, catalog, phase, record_job, tag
from workflows.replica_state import change, claim_or_refuse, hold, release, require_state
from workflows.sites import Sites, refuse

# Runs started from here on record their RUNNING job inside the undo's reach (a catalog
# failure there lets the claim go) and read the original's power before the undo starts the
# replica again. Runs recorded before keep their order (replay).
FAILBACK_UNDO = "failback-undo-reads-original"
# A reprotect that fails drops the snapshots it took that no recorded point needs and puts a
# reverse object it moved to REPLICATING back to NOT_READY, so a retry can seed again.
REPROTECT_UNDO = "reprotect-undo"
# A failure after the final sync is undone too: before READY the replica serves again; after
# it the claim is let go with READY (the original holds the data). Drops there are best effort.
FAILBACK_SWITCH_UNDO = "failback-undo-after-sync"
# A permanent failover names its phases (check, done) like every DR operation, so the Web UI
# and the AbdrPhase filter show where it is; runs recorded before had none and replay so.
PERMANENT_PHASES = "permanent-failover-phases"
# The original leaves the plan however long the catalog is down: the failover is permanent
# already, and a VM left in the plan would be refused by every later run. Runs recorded
# before gave up after the catalog's usual five retries.
EXCLUDE_UNTIL_DONE = "permanent-failover-excludes-until-done"


async def ensure_stopped(sites: Sites, site: str, at: VMAt, what: str) -> None:
    """Refuse unless `what` is known not to run (an unreachable site proves nothing here)."""
    power: PowerStateReply = await sites.probe(site, at)
    if not power.reachable:
        raise refuse(f"cannot fail back: site {site} does not answer, so {what} may be running", "SourceUnknown")
    if power.state == "RUNNING":
        raise refuse(f"cannot fail back: {what} is running; stop it first "
                     "(two running copies of one VM are never allowed)", "SourceRunning")


@workflow.defn(name="Failback")
class FailbackWorkflow:
    @workflow.run
    async def run(self, req: FailbackRequest) -> DrOperationResult:
        sites = Sites()
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.failback(req, r, sites)
        spec, obj = r.spec, r.obj
        src, tgt = spec.source_site, spec.target_site
        tag(Operation.FAILBACK, plan=req.plan, vm=str(obj.source), site=src, phase="check")
        require_state(obj, [ReplicaState.FAILOVER], "fail back")
        original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        await ensure_stopped(sites, src, original, f"the original VM {obj.source}")
        await claim_or_refuse(obj, [ReplicaState.FAILOVER], "failback", ReplicaState.FAILBACK, "failback started")
        careful = workflow.patched(FAILBACK_UNDO)
        if not careful:
            await record_job(Operation.FAILBACK, "RUNNING", plan=req.plan, vm=req.vm)
        stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
        pull = PullInput(remote_site=tgt, remote=replica, local=original, bandwidth_mbps=r.failback_bandwidth_mbps,
                         kind=TransferKind.FAILBACK, compression=spec.compression)
        taken: list[str] = []
        replica_stopped = False
        try:
            if careful:
                await record_job(Operation.FAILBACK, "RUNNING", plan=req.plan, vm=req.vm)
            phase("pre-sync", f"{obj.replica} (running) -> {obj.source}")
            s1 = await sites.snapshot(tgt, replica, f"abdr-fb1-{stamp}", spec.consistency)
            taken.append(s1.snapshot_id)
            pre = await sites.pull(src, pull.model_copy(update={
                "remote": replica.model_copy(update={"snapshot_id": s1.snapshot_id}),
                "remote_base": obj.failover_snapshot, "local_base": obj.source_snapshot}))
            phase("final-sync", f"{obj.replica} stopped -> {obj.source}")
            replica_stopped = True
            await sites.shutdown(tgt, replica, ShutdownMode.SHUTDOWN_WITH_POWEROFF, 120)
            s2 = await sites.snapshot(tgt, replica, f"abdr-fb2-{stamp}", spec.consistency)
            taken.append(s2.snapshot_id)
            final: PullResult = await sites.pull(src, pull.model_copy(update={
                "remote": replica.model_copy(update={"snapshot_id": s2.snapshot_id}), "remote_base": s1.snapshot_id}))
        except BaseException as e:
            phase("undo", failure_text(e))
            serves = "the replica serves again"
            if replica_stopped:
                # Two running copies are never allowed: an original started meanwhile keeps
                # the replica stopped, and the reason says so.
                if not (careful and await sites.known_running(src, original)):
                    await sites.power(tgt, replica, on=True)
                else:
                    serves = f"the original {obj.source} runs, so the replica stays stopped"
            for snapshot_id in taken:
                await sites.drop_snapshot(tgt, replica, snapshot_id)
            await release(req.plan, req.vm, ReplicaState.FAILOVER,
                          f"failback failed, {serves}: {failure_text(e)}"[:1000])
            await record_job(Operation.FAILBACK, "FAILED", plan=req.plan, vm=req.vm,
                             result={"error": failure_text(e)}, finished=True)
            raise
        phase("switch", f"{obj.source} takes over again")
        # Runs from here undo a failed switch too; runs recorded before replay as they ran.
        undo_switch = workflow.patched(FAILBACK_SWITCH_UNDO)
        base: SnapshotRef | None = None
        point_id = f"{req.vm}.fb{stamp}"
        recorded = ready = False
        try:
            base = await sites.snapshot(src, original, f"abdr-rep-fb-{stamp}", spec.consistency)
            await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
                plan=req.plan, replica=obj.replica, point_id=point_id, snapshot_id=s2.snapshot_id,
                creation=PointCreation.FAILBACK, created_at=workflow.now(), config=s2.config,
                logical_bytes=final.disk_bytes, stored_bytes=pre.moved_bytes + final.moved_bytes))
            recorded = True
            old_base = obj.source_snapshot
            obj = await hold(req.plan, req.vm, ReplicaState.READY, f"failback done at point {point_id}",
                             source_snapshot=base.snapshot_id, replica_point=point_id, failover_snapshot=None,
                             last_point_at=workflow.now())
            ready = True
            # Old snapshots left behind are harmless (a later run drops them): not a failure.
            await sites.drop_snapshot(tgt, replica, s1.snapshot_id, best_effort=undo_switch)
            if old_base:
                await sites.drop_snapshot(src, original, old_base, best_effort=undo_switch)
            if req.power_on:
                phase("power-on", str(obj.source))
                await ensure_stopped(sites, tgt, replica, f"the replica {obj.replica}")
                await sites.power(src, original, on=True)
        except BaseException as e:
            if not undo_switch:
                raise
            phase("undo", failure_text(e))
            if ready:  # the original holds the replica's data and is the copy of record
                await release(req.plan, req.vm, reason=f"failback done, the original not started: "
                                                       f"{failure_text(e)}"[:1000])
            else:  # the replica is still the copy of record: it serves again
                serves = "the replica serves again"
                if not await sites.known_running(src, original):
                    await sites.power(tgt, replica, on=True)
                else:
                    serves = f"the original {obj.source} runs, so the replica stays stopped"
                if base is not None:
                    await sites.drop_snapshot(src, original, base.snapshot_id, best_effort=True)
                # s2 stays once the FAILBACK point names it; s1 goes.
                for snapshot_id in ([s1.snapshot_id] if recorded else [s1.snapshot_id, s2.snapshot_id]):
                    await sites.drop_snapshot(tgt, replica, snapshot_id, best_effort=True)
                await release(req.plan, req.vm, ReplicaState.FAILOVER,
                              f"failback failed after the final sync, {serves}: {failure_text(e)}"[:1000])
            await record_job(Operation.FAILBACK, "FAILED", plan=req.plan, vm=req.vm,
                             result={"error": failure_text(e)}, finished=True)
            raise
        obj = await release(req.plan, req.vm, reason="failback done")
        moved = pre.moved_bytes + final.moved_bytes
        result = DrOperationResult(operation="failback", plan=req.plan, vm=req.vm, state=obj.state, point_id=point_id,
                                   moved_bytes=moved, disk_bytes=final.disk_bytes,
                                   details={"pre_sync_bytes": pre.moved_bytes, "final_sync_bytes": final.moved_bytes,
                                            "wire_bytes": pre.wire_bytes + final.wire_bytes})
        await record_job(Operation.FAILBACK, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        phase("done", f"moved {moved} of {final.disk_bytes} bytes")
        return result


@workflow.defn(name="PermanentFailover")
class PermanentFailoverWorkflow:
    """The replica becomes the production VM; the replication relationship ends and the
    original leaves the plan. With `reprotect`, a reverse plan replicates the new production
    VM back onto the old original, its first sync a delta (the failback pre-sync's extents)."""

    @workflow.run
    async def run(self, req: PermanentFailoverRequest) -> DrOperationResult:
        sites = Sites()
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.permanent_failover(req, r, sites)
        spec, obj = r.spec, r.obj
        tag(Operation.PERMANENT_FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site)
        phased = workflow.patched(PERMANENT_PHASES)
        if phased:
            phase("check", f"{obj.source} failed over to {obj.replica}")
        require_state(obj, [ReplicaState.FAILOVER], "make permanent the failover of")
        await claim_or_refuse(obj, [ReplicaState.FAILOVER], "permanent failover")
        details: dict = {}
        try:
            if req.reprotect:
                details = await self.reprotect(sites, r)
        except BaseException as e:
            await release(req.plan, req.vm, reason=f"permanent failover failed: {failure_text(e)}"[:1000])
            raise
        obj = await release(req.plan, req.vm, ReplicaState.PERMANENT_FAILOVER, "permanent failover")
        await catalog(ReplicationCatalogApi.exclude_from_plan, ObjectRef(plan=req.plan, vm=req.vm),
                      retry_policy=UNTIL_DONE if workflow.patched(EXCLUDE_UNTIL_DONE) else CATALOG_RETRY,
                      local=False)  # it pauses the plan's schedule in Temporal
        result = DrOperationResult(operation="permanent_failover", plan=req.plan, vm=req.vm, state=obj.state,
                                   details=details)
        await record_job(Operation.PERMANENT_FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        if phased:
            phase("done", f"{obj.replica} is the production VM" + (f"; reverse plan {details['reverse_plan']}"
                                                                   if details else ""))
        return result

    @staticmethod
    async def reprotect(sites: Sites, r: ResolvedObject) -> dict:
        """Seed the reverse plan: the new production VM's changes since failover onto the old original."""
        spec, obj = r.spec, r.obj
        phase("reprotect-seed", f"{obj.replica} -> {obj.source}")
        stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
        careful = workflow.patched(REPROTECT_UNDO)
        unneeded: list[tuple[str, VMAt, str]] = []  # (site, VM, snapshot) to drop if the seed fails
        reverse, seeding = "", False
        try:
            seed = await sites.snapshot(spec.target_site, replica, f"abdr-rep-rp-{stamp}", spec.consistency)
            unneeded.append((spec.target_site, replica, seed.snapshot_id))
            moved: PullResult = await sites.pull(spec.source_site, PullInput(
                remote_site=spec.target_site, remote=replica.model_copy(update={"snapshot_id": seed.snapshot_id}),
                remote_base=obj.failover_snapshot, local=original, local_base=obj.source_snapshot,
                compression=spec.compression))
            rsnap = await sites.snapshot(spec.source_site, original, f"abdr-rp-rp-{stamp}", spec.consistency)
            unneeded.append((spec.source_site, original, rsnap.snapshot_id))
            reverse = await catalog(ReplicationCatalogApi.create_reverse_plan,
                                    ObjectRef(plan=r.spec.name, vm=obj.source.vm), local=False)  # and its schedule
            point_id = f"{obj.replica.vm}.rp{stamp}"
            await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
                plan=reverse, replica=obj.source, point_id=point_id, snapshot_id=rsnap.snapshot_id,
                creation=PointCreation.MANUAL, created_at=workflow.now(), config=rsnap.config,
                logical_bytes=moved.disk_bytes, stored_bytes=moved.moved_bytes))
            unneeded.pop()  # the recorded point is the reverse replica's: its snapshot stays
            await change(reverse, obj.replica.vm, ReplicaState.REPLICATING, "seeded by reprotect",
                         expect=[ReplicaState.NOT_READY])
            seeding = True
            await change(reverse, obj.replica.vm, ReplicaState.READY, "seeded by reprotect",
                         expect=[ReplicaState.REPLICATING], source_snapshot=seed.snapshot_id, replica_point=point_id,
                         source_vm_id=replica.vm_id, replica_vm_id=original.vm_id, last_point_at=workflow.now())
        except BaseException:
            if careful:
                if seeding:
                    await change(reverse, obj.replica.vm, ReplicaState.NOT_READY, "reprotect failed: seed again",
                                 expect=[ReplicaState.REPLICATING])
                for site, at, snapshot_id in unneeded:
                    await sites.drop_snapshot(site, at, snapshot_id)
            raise
        return {"reverse_plan": reverse, "seed_moved_bytes": moved.moved_bytes, "disk_bytes": moved.disk_bytes}
