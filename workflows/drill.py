"""Failover test (drill): a copy of the replica at a point, on an isolated network, powered
on and checked, while replication goes on; cleaned up on request (signal `cleanup`) or
after the set time. The point is marked tested with the evidence."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.jobs import Operation, PowerInput
    from models.replication import ReplicaState
    from models.replication_jobs import (
        CloneInput,
        DrOperationResult,
        ObjectRef,
        PointQuery,
        PowerStateReply,
        ReplicaPoint,
        ResolvedObject,
        VMAt,
    )
    from models.requests import FailoverTestRequest

from workflows.common import catalog, phase, record_job, tag
from workflows.failover import refuse
from workflows.replication import Sites, change


def drill_id(plan: str, vm: str) -> str:
    return f"drill/{plan}/{vm}"


@workflow.defn(name="FailoverTest")
class FailoverTestWorkflow:
    def __init__(self) -> None:
        self._cleanup = False
        self._evidence: dict = {}

    @workflow.signal
    def cleanup(self) -> None:
        self._cleanup = True

    @workflow.query
    def evidence(self) -> dict:
        return self._evidence

    @workflow.run
    async def run(self, req: FailoverTestRequest) -> DrOperationResult:
        r: ResolvedObject = await catalog("get_replica", ObjectRef(plan=req.plan, vm=req.vm), ResolvedObject)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER_TEST, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="start")
        if obj.state != ReplicaState.READY:
            raise refuse(f"cannot test failover of {obj.source}: its replica is {obj.state} (needs READY)")
        point: ReplicaPoint = await catalog("find_replica_point", PointQuery(plan=req.plan, vm=req.vm, point=req.point),
                                            ReplicaPoint)
        await change(req.plan, req.vm, ReplicaState.FAILOVER_TEST, f"drill of point {point.point_id}")
        sites, tgt = Sites(), spec.target_site
        name = f"{obj.replica.vm}-test"[:63]
        copy_id = ""
        try:
            phase("copy", f"{obj.replica} @ {point.point_id} -> {name} on {req.test_network}")
            source = VMAt(cluster=spec.target_cluster, vm_id=obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
            copy_id = await sites.call(tgt, "clone_vm_at", CloneInput(source=source, name=name,
                                                                      network=req.test_network), str,
                                       start_to_close_timeout=timedelta(hours=6), heartbeat_timeout=timedelta(minutes=2))
            copy = VMAt(cluster=spec.target_cluster, vm_id=copy_id)
            await sites.call(tgt, "set_power", PowerInput(cluster=spec.target_cluster, vm_id=copy_id, on=True))
            phase("health-check", name)
            state: PowerStateReply = await sites.call(tgt, "power_state", copy, PowerStateReply)
            booted = await sites.call(tgt, "disk_digest", copy, dict)
            expected = await sites.call(tgt, "disk_digest", source, dict)
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
                await sites.call(tgt, "delete_vm", VMAt(cluster=spec.target_cluster, vm_id=copy_id))
            obj = await change(req.plan, req.vm, ReplicaState.READY, f"drill of {point.point_id} ended")
        result = DrOperationResult(operation="failover_test", plan=req.plan, vm=req.vm, state=obj.state,
                                   point_id=point.point_id, details={**self._evidence, "tested": healthy})
        await record_job(Operation.FAILOVER_TEST, "TESTED" if healthy else "FAILED", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        return result
