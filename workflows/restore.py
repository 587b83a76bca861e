"""Restore a restore point: INPLACE over its VM (power off, write only what differs, the
point's configuration, start if asked) or REBUILD as a new VM on a chosen cluster."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.jobs import (
        CreateVMInput,
        Operation,
        PowerInput,
        ResolvedRestore,
        RestoreDisksInput,
        RestoreDisksResult,
        RestoreInput,
        RestoreResult,
        SnapshotRef,
    )
    from models.queues import site_task_queue
    from models.requests import RestoreMode

from workflows.backup import SITE_HEARTBEAT, TRANSFER_HEARTBEAT
from workflows.common import catalog, phase, record_job, retry, tag


def restore_id(cluster: str, vm: str) -> str:
    return f"restore/{cluster}/{vm}"


@workflow.defn(name="Restore")
class RestoreWorkflow:
    @workflow.run
    async def run(self, inp: RestoreInput) -> RestoreResult:
        req = inp.request
        tag(Operation.RESTORE, phase="resolve")
        r: ResolvedRestore = await catalog("resolve_restore", inp, ResolvedRestore)
        tag(Operation.RESTORE, vm=str(r.target), site=r.site, plan=None)
        queue = site_task_queue(r.site)

        async def site(activity: str, arg: object, result_type: type | None = None, **kw: object) -> object:
            opts = dict(start_to_close_timeout=timedelta(minutes=10), retry_policy=retry(),
                        heartbeat_timeout=SITE_HEARTBEAT)
            opts.update(kw)
            return await workflow.execute_activity(activity, arg, task_queue=queue, result_type=result_type,
                                                   summary=f"{activity} {r.target}", **opts)

        await record_job(Operation.RESTORE, "RUNNING", vm=str(r.target))
        if req.mode == RestoreMode.INPLACE:
            phase("power-off", f"{r.target}")
            vm_id = await site("find_vm", r.target, str)
            await site("set_power", PowerInput(cluster=r.target.cluster, vm_id=vm_id, on=False))
            phase("configure", "the point's configuration")
            await site("apply_config", SnapshotRef(cluster=r.target.cluster, vm_id=vm_id, snapshot_id="",
                                                   config=r.config))
        else:
            phase("create-vm", f"{r.target} from point {r.point_id}")
            created: SnapshotRef = await site("create_vm_for_restore", CreateVMInput(
                cluster=r.target.cluster, config=r.config, network_mapping=req.network_mapping), SnapshotRef)
            vm_id = created.vm_id
        phase("write", f"point {r.point_id} -> {r.target}")
        written: RestoreDisksResult = await site(
            "restore_disks", RestoreDisksInput(restore=r, vm_id=vm_id, new_vm=req.mode == RestoreMode.REBUILD), RestoreDisksResult,
            # Short: the server sees durable progress every 8 s (the core throttles heartbeats to 80%).
            start_to_close_timeout=timedelta(hours=24), heartbeat_timeout=TRANSFER_HEARTBEAT)
        if req.power_on:
            phase("power-on")
            await site("set_power", PowerInput(cluster=r.target.cluster, vm_id=vm_id, on=True))
        result = RestoreResult(point_id=r.point_id, vm=r.target, vm_id=vm_id, written_bytes=written.written_bytes,
                               total_bytes=written.total_bytes, powered_on=req.power_on)
        await record_job(Operation.RESTORE, "SUCCESS", vm=str(r.target), result=result.model_dump(mode="json"),
                         finished=True)
        phase("done", f"wrote {written.written_bytes} of {written.total_bytes} bytes")
        return result
