"""Failover test (drill): a copy of the replica at a point, on an isolated network, powered
on and checked, while replication goes on; cleaned up on request (signal `cleanup`) or
after the set time. The point is marked tested with the evidence.

The replica goes READY -> FAILOVER_TEST -> READY by compare-and-set: if a real failover
takes the replica during the drill, the cleanup removes the test copy and leaves the
replica's state to the failover."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ReplicationApi, ReplicationCatalogApi
    from models.inventory import GuestSigns
    from models.jobs import Operation
    from models.replication import ReplicaState
    from models.replication_jobs import (
        CloneInput,
        DrOperationResult,
        ObjectRef,
        ReplicaPoint,
        ResolvedObject,
        VMAt,
    )
    from models.requests import FailoverTestRequest

from workflows import v1
from workflows.backup import failure_text
from workflows.common import catalog, phase, record_job, tag
from workflows.failover import find_point
from workflows.replica_state import change, require_state
from workflows.sites import Sites, refuse

COPY_HEARTBEAT = timedelta(seconds=30)  # the worker's ticker beats every 2 s while a copy runs
DIGEST_TIMEOUT = timedelta(hours=6)  # a digest reads every byte of the VM's disks
DRILL_COPY_KNOWN = "drill-deletes-an-unstarted-copy"
# The health check asks the guest itself (its console, its agent) where the hypervisor can
# see them; runs recorded before compared the copy's disks with the point only.
DRILL_ASKS_THE_GUEST = "drill-asks-the-guest"
SIGNS_EVERY = timedelta(seconds=5)


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
        sites = Sites()
        r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
        if not workflow.patched(v1.CLAIM_FIRST):
            return await v1.failover_test(self, req, r, sites)
        spec, obj = r.spec, r.obj
        tag(Operation.FAILOVER_TEST, plan=req.plan, vm=str(obj.source), site=spec.target_site, phase="start")
        require_state(obj, [ReplicaState.READY], "test the failover of")
        point = await find_point(req.plan, req.vm, req.point)
        try:
            await change(req.plan, req.vm, ReplicaState.FAILOVER_TEST, f"drill of point {point.point_id}",
                         expect=[ReplicaState.READY])
        except ActivityError as e:
            raise refuse(f"failover test of {obj.source} refused: {failure_text(e)}", "StateConflict") from None
        tgt, name = spec.target_site, f"{obj.replica.vm}-test"[:63]
        copy_id, healthy = "", False
        try:
            made = await self.make_copy(sites, r, point, name, req.test_network)
            # From here a failure deletes the copy too, even one that never started (runs
            # recorded before learned its id only once it was powered on: they replay so).
            copy_id = made if workflow.patched(DRILL_COPY_KNOWN) else ""
            await sites.power(tgt, VMAt(cluster=spec.target_cluster, vm_id=made), on=True)
            copy_id = made
            healthy = await self.check(sites, r, point, copy_id, name, req)
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
            state = await self.end_drill(req, point)
        result = DrOperationResult(operation="failover_test", plan=req.plan, vm=req.vm, state=state,
                                   point_id=point.point_id, details={**self._evidence, "tested": healthy})
        await record_job(Operation.FAILOVER_TEST, "TESTED" if healthy else "FAILED", plan=req.plan, vm=req.vm,
                         result=result.model_dump(mode="json"), finished=True)
        return result

    @staticmethod
    async def make_copy(sites: Sites, r: ResolvedObject, point: ReplicaPoint, name: str, network: str) -> str:
        phase("copy", f"{r.obj.replica} @ {point.point_id} -> {name} on {network}")
        cluster = r.spec.target_cluster
        source = VMAt(cluster=cluster, vm_id=r.obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
        copy_id = await sites.call(r.spec.target_site, ReplicationApi.clone_vm_at, CloneInput(
            source=source, name=name, network=network),
            start_to_close_timeout=timedelta(hours=6), heartbeat_timeout=COPY_HEARTBEAT)
        return copy_id

    async def check(self, sites: Sites, r: ResolvedObject, point: ReplicaPoint, copy_id: str, name: str,
                    req: FailoverTestRequest) -> bool:
        """Healthy: the copy runs and shows it booted — on its own console (matching
        `expect_console`, or any output) or by its guest agent's answer — where the
        hypervisor can see either; elsewhere (the local driver simulates no guest) its
        disks read as the point's."""
        network = req.test_network
        phase("health-check", name)
        tgt, cluster = r.spec.target_site, r.spec.target_cluster
        copy = VMAt(cluster=cluster, vm_id=copy_id)
        if workflow.patched(DRILL_ASKS_THE_GUEST):
            signs, shown = await self.wait_for_signs(sites, tgt, copy, req)
            if signs.visible:
                state = await sites.call(tgt, ReplicationApi.power_state, copy)
                self._evidence = {"point": point.point_id, "test_vm": name, "network": network,
                                  "power_state": state.state, "evidence": "guest", "booted": shown,
                                  "console_tail": signs.console_tail or "", "agent_ping": signs.agent,
                                  "expect_console": req.expect_console, "checked_at": workflow.now().isoformat()}
                return state.state == "RUNNING" and shown
        source = VMAt(cluster=cluster, vm_id=r.obj.replica_vm_id or "", snapshot_id=point.snapshot_id)
        state = await sites.call(tgt, ReplicationApi.power_state, copy)
        booted = await sites.call(tgt, ReplicationApi.disk_digest, copy, start_to_close_timeout=DIGEST_TIMEOUT,
                                  heartbeat_timeout=COPY_HEARTBEAT)
        expected = await sites.call(tgt, ReplicationApi.disk_digest, source, start_to_close_timeout=DIGEST_TIMEOUT,
                                    heartbeat_timeout=COPY_HEARTBEAT)
        self._evidence = {"point": point.point_id, "test_vm": name, "network": network,
                          "power_state": state.state, "disks_match_point": booted == expected,
                          "disk_digests": booted, "checked_at": workflow.now().isoformat()}
        return state.state == "RUNNING" and booted == expected

    @staticmethod
    async def wait_for_signs(sites: Sites, site: str, copy: VMAt, req: FailoverTestRequest) -> tuple[GuestSigns, bool]:
        """Ask the copy's guest until it shows it booted or the boot timeout passes."""
        deadline = workflow.now() + timedelta(seconds=req.boot_timeout_s)
        pattern = re.compile(req.expect_console or r"\S")
        while True:
            signs = await sites.call(site, ReplicationApi.guest_signs, copy)
            shown = bool(signs.console_tail and pattern.search(signs.console_tail)) or (
                req.expect_console is None and signs.agent is True)
            if shown or not signs.visible or workflow.now() >= deadline:
                return signs, shown
            await workflow.sleep(SIGNS_EVERY)

    @staticmethod
    async def end_drill(req: FailoverTestRequest, point: ReplicaPoint) -> ReplicaState:
        """FAILOVER_TEST -> READY, unless another operation (a real failover) moved it meanwhile."""
        try:
            obj = await change(req.plan, req.vm, ReplicaState.READY, f"drill of {point.point_id} ended",
                               expect=[ReplicaState.FAILOVER_TEST])
            return obj.state
        except ActivityError as e:
            phase("cleanup", f"replica left as it is: {failure_text(e)}")
            r = await catalog(ReplicationCatalogApi.get_replica, ObjectRef(plan=req.plan, vm=req.vm))
            return r.obj.state
