"""Frozen first versions of the DR and replicate runbooks, kept so that runs started before
the claim-first rewrite (`workflow.patched(CLAIM_FIRST)` is false for them) replay and finish
as they began. They change nothing new; delete this module once no such run can remain
(the longest is a failover test's cleanup timer). Each function starts after the run's
first command, `get_replica`, which both versions share."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, ReplicationApi, ReplicationCatalogApi, RestoreApi
    from models.inventory import ShutdownMode
    from models.jobs import Operation, PowerInput, SnapshotInput, SnapshotRef
    from models.replication import ReplicaState, ReplicationObject
    from models.replication_jobs import (
        CloneInput,
        DrOperationResult,
        EnsureReplicaInput,
        ObjectChange,
        ObjectRef,
        PointQuery,
        PowerStateReply,
        PullInput,
        PullResult,
        ReplicaPoint,
        ReplicaPointRecord,
        ReplicaRetentionInput,
        ReplicateInput,
        ReplicateResult,
        ResolvedObject,
        ShutdownInput,
        SnapshotDrop,
        VMAt,
    )
    from models.requests import (
        NOW,
        FailbackRequest,
        FailoverRequest,
        FailoverTestRequest,
        PermanentFailoverRequest,
        UndoFailoverRequest,
    )
    from models.restore_points import PointCreation

from workflows.common import catalog, phase, record_job, tag

CLAIM_FIRST = "dr-claim-first"
PROBE = timedelta(seconds=20)
REPLICABLE = {ReplicaState.NOT_READY, ReplicaState.READY, ReplicaState.FAILOVER_TEST}


def refuse(message: str, kind: str = "InvalidState") -> ApplicationError:
    return ApplicationError(message, type=kind, non_retryable=True)


async def change(plan: str, vm: str, to: ReplicaState | None = None, reason: str = "",
                 **updates: Any) -> ReplicationObject:
    """v1's unconditional change (no expected state, no claim)."""
    last = updates.pop("last_point_at", None)
    return await catalog(ReplicationCatalogApi.change_replica, ObjectChange(
        plan=plan, vm=vm, to=to, reason=reason, at=workflow.now(), updates=updates, last_point_at=last))


async def source_power(sites: Any, r: ResolvedObject) -> PowerStateReply:
    if not r.obj.source_vm_id:
        return PowerStateReply(state="UNKNOWN", reachable=False)
    try:
        return await sites.call(r.spec.source_site, ReplicationApi.power_state,
                                VMAt(cluster=r.spec.source_cluster, vm_id=r.obj.source_vm_id),
                                reach=PROBE, start_to_close_timeout=PROBE)
    except ActivityError:
        return PowerStateReply(state="UNKNOWN", reachable=False)


async def replicate(inp: ReplicateInput, r: ResolvedObject, sites: Any, replicate_id: Any = None) -> ReplicateResult:
    spec = inp.spec
    obj = r.obj
    tag(Operation.REPLICATION, plan=spec.name, vm=str(obj.source), site=spec.target_site)
    if obj.state not in REPLICABLE:
        raise ApplicationError(f"replica {obj.replica} is in state {obj.state}: replication is suspended",
                               type="InvalidState", non_retryable=True)
    src, tgt = spec.source_site, spec.target_site
    phase("snapshot", f"{obj.source} on site {src}")
    source_vm_id: str = await sites.call(src, BackupApi.find_vm, obj.source, reach=timedelta(minutes=5))
    snap: SnapshotRef = await sites.call(src, BackupApi.create_snapshot, SnapshotInput(
        cluster=spec.source_cluster, vm_id=source_vm_id, name=f"abdr-rep-{inp.point_id}",
        consistency=spec.consistency))
    drilling = obj.state == ReplicaState.FAILOVER_TEST
    if not drilling:
        await change(spec.name, inp.vm, ReplicaState.REPLICATING, f"run {inp.point_id}")
    try:
        replica_vm_id: str = await sites.call(tgt, ReplicationApi.ensure_replica, EnsureReplicaInput(
            spec=spec, replica=obj.replica, source_config=snap.config, known_vm_id=obj.replica_vm_id))
        base = obj.source_snapshot if obj.replica_point else None
        phase("transfer", f"{'changes since the last point' if base else 'initial seed'} -> {obj.replica}")
        moved = await sites.pull(tgt, PullInput(
            remote_site=src, remote=VMAt(cluster=spec.source_cluster, vm_id=source_vm_id,
                                         snapshot_id=snap.snapshot_id),
            remote_base=base, local=VMAt(cluster=spec.target_cluster, vm_id=replica_vm_id),
            bandwidth_mbps=inp.bandwidth_mbps))
        phase("replica-point")
        rsnap: SnapshotRef = await sites.call(tgt, BackupApi.create_snapshot, SnapshotInput(
            cluster=spec.target_cluster, vm_id=replica_vm_id, name=f"abdr-rp-{inp.point_id}",
            consistency=spec.consistency))
        now = workflow.now()
        await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
            plan=spec.name, replica=obj.replica, point_id=inp.point_id, snapshot_id=rsnap.snapshot_id,
            creation=inp.creation, created_at=now, config=rsnap.config, logical_bytes=moved.disk_bytes,
            stored_bytes=moved.moved_bytes))
    except BaseException:
        await sites.call(src, ReplicationApi.drop_snapshot, SnapshotDrop(at=VMAt(cluster=spec.source_cluster,
                                                                                 vm_id=source_vm_id,
                                                                                 snapshot_id=snap.snapshot_id)),
                         reach=timedelta(minutes=5))
        if not drilling:
            back = ReplicaState.READY if obj.replica_point else ReplicaState.NOT_READY
            await change(spec.name, inp.vm, back, "run failed")
        raise
    await change(spec.name, inp.vm, None if drilling else ReplicaState.READY, f"point {inp.point_id}",
                 source_snapshot=snap.snapshot_id, replica_point=inp.point_id, source_vm_id=source_vm_id,
                 replica_vm_id=replica_vm_id, last_point_at=now)
    if obj.source_snapshot and obj.source_snapshot != snap.snapshot_id:
        await sites.call(src, ReplicationApi.drop_snapshot, SnapshotDrop(at=VMAt(
            cluster=spec.source_cluster, vm_id=source_vm_id, snapshot_id=obj.source_snapshot)))
    await sites.call(tgt, ReplicationApi.replica_retention, ReplicaRetentionInput(
        plan=spec.name, replica=obj.replica, replica_vm_id=replica_vm_id, keep_snapshot=inp.point_id))
    phase("done")
    return ReplicateResult(vm=obj.source, ok=True, point_id=inp.point_id, seeded=base is None,
                           moved_bytes=moved.moved_bytes, wire_bytes=moved.wire_bytes, disk_bytes=moved.disk_bytes)

async def failover(req: FailoverRequest, r: ResolvedObject, sites: Any, replicate_workflow: Any,
                   replicate_id: Any) -> DrOperationResult:
    spec, obj = r.spec, r.obj
    tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="check")
    if obj.state not in (ReplicaState.READY, ReplicaState.FAILOVER_TEST):
        raise refuse(f"cannot fail over {obj.source}: its replica is {obj.state} (needs READY)")
    await record_job(Operation.FAILOVER, "RUNNING", plan=req.plan, vm=req.vm)
    details: dict = {}
    if req.source_shutdown != ShutdownMode.NONE:
        phase("fence-source", f"{req.source_shutdown} {obj.source}")
        try:
            await sites.call(spec.source_site, ReplicationApi.shutdown_vm, ShutdownInput(
                at=VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or ""), mode=req.source_shutdown,
                timeout_s=req.shutdown_timeout_s),
                reach=timedelta(seconds=req.shutdown_timeout_s * 2 + 60),
                start_to_close_timeout=timedelta(seconds=req.shutdown_timeout_s + 60))
        except ActivityError as e:
            raise refuse(f"failover aborted: the source VM {obj.source} could not be stopped "
                         f"({req.source_shutdown}): {e.cause or e}", "SourceNotStopped") from None
        details["source"] = f"stopped ({req.source_shutdown})"
    point_arg = req.point
    if req.point == NOW:
        phase("final-sync", f"{obj.source} -> {obj.replica}")
        synced: ReplicateResult = await workflow.execute_child_workflow(
            replicate_workflow, ReplicateInput(spec=spec, vm=req.vm, creation=PointCreation.FAILOVER,
                                                  point_id=f"{req.vm}.fo{workflow.now():%Y%m%dT%H%M%SZ}"),
            id=replicate_id(spec.name, req.vm))
        point_arg = synced.point_id or ""
        details["final_sync_bytes"] = synced.moved_bytes
    point: ReplicaPoint = await catalog(ReplicationCatalogApi.find_replica_point,
                                        PointQuery(plan=req.plan, vm=req.vm, point=point_arg))
    src = await source_power(sites, r)
    if src.reachable and src.state == "RUNNING":
        raise refuse(f"failover refused: the source VM {obj.source} is running; stop it or choose a "
                     "source_shutdown mode (two running copies of one VM are never allowed)", "SourceRunning")
    details.setdefault("source", "stopped" if src.reachable else "unreachable (not fenced)")
    phase("rollback", f"{obj.replica} -> point {point.point_id}")
    replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
    await sites.call(spec.target_site, RestoreApi.set_power, PowerInput(cluster=spec.target_cluster,
                                                                        vm_id=replica.vm_id, on=False))
    await sites.call(spec.target_site, ReplicationApi.rollback_vm, replica)
    # From here the replica's changes are tracked against the point's snapshot (failback).
    obj = await change(req.plan, req.vm, ReplicaState.FAILOVER, f"failover to {point.point_id}",
                       failover_snapshot=point.snapshot_id)
    if req.power_on:
        phase("power-on", str(obj.replica))
        await sites.call(spec.target_site, RestoreApi.set_power, PowerInput(cluster=spec.target_cluster,
                                                                            vm_id=replica.vm_id, on=True))
    result = DrOperationResult(operation="failover", plan=req.plan, vm=req.vm, state=obj.state,
                               point_id=point.point_id, details=details)
    await record_job(Operation.FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                     result=result.model_dump(mode="json"), finished=True)
    phase("done", f"{obj.replica} serves at point {point.point_id}")
    return result


async def undo_failover(req: UndoFailoverRequest, r: ResolvedObject, sites: Any) -> DrOperationResult:
    spec, obj = r.spec, r.obj
    tag(Operation.FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="undo")
    if obj.state != ReplicaState.FAILOVER:
        raise refuse(f"nothing to undo: the replica of {obj.source} is {obj.state}, not FAILOVER")
    point: ReplicaPoint = await catalog(ReplicationCatalogApi.find_replica_point,
                                        PointQuery(plan=req.plan, vm=req.vm, point=obj.replica_point or ""))
    replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
    await sites.call(spec.target_site, RestoreApi.set_power, PowerInput(cluster=spec.target_cluster,
                                                                        vm_id=replica.vm_id, on=False))
    await sites.call(spec.target_site, ReplicationApi.rollback_vm, replica)
    obj = await change(req.plan, req.vm, ReplicaState.READY, "failover undone", failover_snapshot=None)
    result = DrOperationResult(operation="undo_failover", plan=req.plan, vm=req.vm, state=obj.state,
                               point_id=point.point_id)
    await record_job(Operation.FAILOVER, "UNDONE", plan=req.plan, vm=req.vm,
                     result=result.model_dump(mode="json"), finished=True)
    return result


async def failback(req: FailbackRequest, r: ResolvedObject, sites: Any) -> DrOperationResult:
    spec, obj = r.spec, r.obj
    src, tgt = spec.source_site, spec.target_site
    tag(Operation.FAILBACK, plan=req.plan, vm=str(obj.source), site=src, phase="check")
    if obj.state != ReplicaState.FAILOVER:
        raise refuse(f"cannot fail back {obj.source}: its replica is {obj.state} (needs FAILOVER)")
    original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
    replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
    power: PowerStateReply = await sites.call(src, ReplicationApi.power_state, original)
    if power.state == "RUNNING":
        raise refuse(f"cannot fail back: the original VM {obj.source} is running while its replica serves; "
                     "stop it first (two running copies of one VM are never allowed)", "SourceRunning")
    await change(req.plan, req.vm, ReplicaState.FAILBACK, "failback started")
    await record_job(Operation.FAILBACK, "RUNNING", plan=req.plan, vm=req.vm)
    stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
    bandwidth = r.failback_bandwidth_mbps
    try:
        phase("pre-sync", f"{obj.replica} (running) -> {obj.source}")
        s1: SnapshotRef = await sites.call(tgt, BackupApi.create_snapshot, SnapshotInput(
            cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-fb1-{stamp}",
            consistency=spec.consistency))
        pre = await sites.pull(src, PullInput(
            remote_site=tgt, remote=replica.model_copy(update={"snapshot_id": s1.snapshot_id}),
            remote_base=obj.failover_snapshot, local=original, local_base=obj.source_snapshot,
            bandwidth_mbps=bandwidth))
        phase("final-sync", f"{obj.replica} stopped -> {obj.source}")
        await sites.call(tgt, ReplicationApi.shutdown_vm,
                         ShutdownInput(at=replica, mode=ShutdownMode.SHUTDOWN_WITH_POWEROFF, timeout_s=120),
                         start_to_close_timeout=timedelta(minutes=5))
        s2: SnapshotRef = await sites.call(tgt, BackupApi.create_snapshot, SnapshotInput(
            cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-fb2-{stamp}",
            consistency=spec.consistency))
        final: PullResult = await sites.pull(src, PullInput(
            remote_site=tgt, remote=replica.model_copy(update={"snapshot_id": s2.snapshot_id}),
            remote_base=s1.snapshot_id, local=original, bandwidth_mbps=bandwidth))
    except BaseException:
        await change(req.plan, req.vm, ReplicaState.FAILOVER, "failback failed: the replica keeps serving")
        raise
    phase("switch", f"{obj.source} takes over again")
    base: SnapshotRef = await sites.call(src, BackupApi.create_snapshot, SnapshotInput(
        cluster=spec.source_cluster, vm_id=original.vm_id, name=f"abdr-rep-fb-{stamp}",
        consistency=spec.consistency))
    point_id = f"{req.vm}.fb{stamp}"
    await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
        plan=req.plan, replica=obj.replica, point_id=point_id, snapshot_id=s2.snapshot_id,
        creation=PointCreation.FAILBACK, created_at=workflow.now(), config=s2.config,
        logical_bytes=final.disk_bytes, stored_bytes=pre.moved_bytes + final.moved_bytes))
    old_base = obj.source_snapshot
    obj = await change(req.plan, req.vm, ReplicaState.READY, f"failback done at point {point_id}",
                       source_snapshot=base.snapshot_id, replica_point=point_id, failover_snapshot=None,
                       last_point_at=workflow.now())
    await sites.call(tgt, ReplicationApi.drop_snapshot,
                     SnapshotDrop(at=replica.model_copy(update={"snapshot_id": s1.snapshot_id})))
    if old_base:
        await sites.call(src, ReplicationApi.drop_snapshot,
                         SnapshotDrop(at=original.model_copy(update={"snapshot_id": old_base})))
    if req.power_on:
        await sites.call(src, RestoreApi.set_power,
                         PowerInput(cluster=spec.source_cluster, vm_id=original.vm_id, on=True))
    moved = pre.moved_bytes + final.moved_bytes
    result = DrOperationResult(operation="failback", plan=req.plan, vm=req.vm, state=obj.state, point_id=point_id,
                               moved_bytes=moved, disk_bytes=final.disk_bytes,
                               details={"pre_sync_bytes": pre.moved_bytes, "final_sync_bytes": final.moved_bytes,
                                        "wire_bytes": pre.wire_bytes + final.wire_bytes})
    await record_job(Operation.FAILBACK, "SUCCESS", plan=req.plan, vm=req.vm,
                     result=result.model_dump(mode="json"), finished=True)
    phase("done", f"moved {moved} of {final.disk_bytes} bytes")
    return result


async def permanent_failover(req: PermanentFailoverRequest, r: ResolvedObject, sites: Any) -> DrOperationResult:
    spec, obj = r.spec, r.obj
    tag(Operation.PERMANENT_FAILOVER, plan=req.plan, vm=str(obj.source), site=spec.target_site)
    if obj.state != ReplicaState.FAILOVER:
        raise refuse(f"permanent failover of {obj.source} needs a failover first (replica is {obj.state})")
    details: dict = {}
    if req.reprotect:
        phase("reprotect-seed", f"{obj.replica} -> {obj.source}")
        stamp = f"{workflow.now():%Y%m%dT%H%M%SZ}"
        replica = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "")
        original = VMAt(cluster=spec.source_cluster, vm_id=obj.source_vm_id or "")
        seed: SnapshotRef = await sites.call(spec.target_site, BackupApi.create_snapshot, SnapshotInput(
            cluster=spec.target_cluster, vm_id=replica.vm_id, name=f"abdr-rep-rp-{stamp}",
            consistency=spec.consistency))
        moved: PullResult = await sites.pull(spec.source_site, PullInput(
            remote_site=spec.target_site, remote=replica.model_copy(update={"snapshot_id": seed.snapshot_id}),
            remote_base=obj.failover_snapshot, local=original, local_base=obj.source_snapshot))
        rsnap: SnapshotRef = await sites.call(spec.source_site, BackupApi.create_snapshot, SnapshotInput(
            cluster=spec.source_cluster, vm_id=original.vm_id, name=f"abdr-rp-rp-{stamp}",
            consistency=spec.consistency))
        reverse = await catalog(ReplicationCatalogApi.create_reverse_plan, ObjectRef(plan=req.plan, vm=req.vm))
        point_id = f"{obj.replica.vm}.rp{stamp}"
        await catalog(ReplicationCatalogApi.record_replica_point, ReplicaPointRecord(
            plan=reverse, replica=obj.source, point_id=point_id, snapshot_id=rsnap.snapshot_id,
            creation=PointCreation.MANUAL, created_at=workflow.now(), config=rsnap.config,
            logical_bytes=moved.disk_bytes, stored_bytes=moved.moved_bytes))
        await change(reverse, obj.replica.vm, ReplicaState.REPLICATING, "seeded by reprotect")
        await change(reverse, obj.replica.vm, ReplicaState.READY, "seeded by reprotect",
                     source_snapshot=seed.snapshot_id, replica_point=point_id, source_vm_id=replica.vm_id,
                     replica_vm_id=original.vm_id, last_point_at=workflow.now())
        details = {"reverse_plan": reverse, "seed_moved_bytes": moved.moved_bytes, "disk_bytes": moved.disk_bytes}
    obj = await change(req.plan, req.vm, ReplicaState.PERMANENT_FAILOVER, "permanent failover")
    await catalog(ReplicationCatalogApi.exclude_from_plan, ObjectRef(plan=req.plan, vm=req.vm))
    result = DrOperationResult(operation="permanent_failover", plan=req.plan, vm=req.vm, state=obj.state,
                               details=details)
    await record_job(Operation.PERMANENT_FAILOVER, "SUCCESS", plan=req.plan, vm=req.vm,
                     result=result.model_dump(mode="json"), finished=True)
    return result


async def failover_test(self: Any, req: FailoverTestRequest, r: ResolvedObject, sites: Any) -> DrOperationResult:
    spec, obj = r.spec, r.obj
    tag(Operation.FAILOVER_TEST, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="start")
    if obj.state != ReplicaState.READY:
        raise refuse(f"cannot test failover of {obj.source}: its replica is {obj.state} (needs READY)")
    point: ReplicaPoint = await catalog(ReplicationCatalogApi.find_replica_point,
                                        PointQuery(plan=req.plan, vm=req.vm, point=req.point))
    await change(req.plan, req.vm, ReplicaState.FAILOVER_TEST, f"drill of point {point.point_id}")
    tgt = spec.target_site
    name = f"{obj.replica.vm}-test"[:63]
    copy_id = ""
    try:
        phase("copy", f"{obj.replica} @ {point.point_id} -> {name} on {req.test_network}")
        source = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
        copy_id = await sites.call(tgt, ReplicationApi.clone_vm_at, CloneInput(source=source, name=name,
                                                                               network=req.test_network),
                                   start_to_close_timeout=timedelta(hours=6), heartbeat_timeout=timedelta(minutes=2))
        copy = VMAt(cluster=spec.target_cluster, vm_id=copy_id)
        await sites.call(tgt, RestoreApi.set_power, PowerInput(cluster=spec.target_cluster, vm_id=copy_id, on=True))
        phase("health-check", name)
        state: PowerStateReply = await sites.call(tgt, ReplicationApi.power_state, copy)
        booted = await sites.call(tgt, ReplicationApi.disk_digest, copy)
        expected = await sites.call(tgt, ReplicationApi.disk_digest, source)
        self._evidence = {"point": point.point_id, "test_vm": name, "network": req.test_network,
                          "power_state": state.state, "disks_match_point": booted == expected,
                          "disk_digests": booted, "checked_at": workflow.now().isoformat()}
        healthy = state.state == "RUNNING" and booted == expected
        await record_job(Operation.FAILOVER_TEST, "RUNNING" if healthy else "UNHEALTHY", plan=req.plan,
                         vm=req.vm, result=self._evidence)
        phase("running", f"test copy {name} up; cleanup on request or in {req.cleanup_after_s} s")
        try:
            await workflow.wait_condition(lambda: self._cleanup, timeout=timedelta(seconds=req.cleanup_after_s))
        except asyncio.TimeoutError:
            pass
    finally:
        phase("cleanup", name)
        if copy_id:
            await sites.call(tgt, ReplicationApi.delete_vm, VMAt(cluster=spec.target_cluster, vm_id=copy_id))
        # Same command as v1 recorded, now compare-and-set: a failover during the drill stays.
        obj = await catalog(ReplicationCatalogApi.change_replica, ObjectChange(
            plan=req.plan, vm=req.vm, to=ReplicaState.READY, expect=[ReplicaState.FAILOVER_TEST],
            reason=f"drill of {point.point_id} ended", at=workflow.now()))
    result = DrOperationResult(operation="failover_test", plan=req.plan, vm=req.vm, state=obj.state,
                               point_id=point.point_id, details={**self._evidence, "tested": healthy})
    await record_job(Operation.FAILOVER_TEST, "TESTED" if healthy else "FAILED", plan=req.plan, vm=req.vm,
                     result=result.model_dump(mode="json"), finished=True)
    return result
