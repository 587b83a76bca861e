"""Restore a restore point: INPLACE over its VM (power off, write only what differs, the
point's configuration, start if asked) or REBUILD as a new VM on a chosen cluster."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, CatalogApi, ReplicationApi, RestoreApi, activity_name
    from models.jobs import (
        CreateVMInput,
        Operation,
        PowerInput,
        RestoreDisksInput,
        RestoreInput,
        RestoreResult,
        SnapshotRef,
    )
    from models.queues import site_task_queue
    from models.replication_jobs import VMAt
    from models.requests import RestoreMode

from workflows.backup import SITE_HEARTBEAT, TRANSFER_HEARTBEAT, failure_text
from workflows.common import A, R, catalog, phase, record_job, retry, tag

# A REBUILD that fails after creating its VM deletes that VM (a half-written VM is no
# restore); runs recorded before left it and replay so.
REBUILD_UNDO = "restore-rebuild-deletes-its-vm"

@workflow.defn(name="Restore")
class RestoreWorkflow:
    @workflow.run
    async def run(self, inp: RestoreInput) -> RestoreResult:
        req = inp.request
        tag(Operation.RESTORE, phase="resolve")
        r = await catalog(CatalogApi.resolve_restore, inp)
        tag(Operation.RESTORE, vm=str(r.target), site=r.site, plan=None)
        queue = site_task_queue(r.site)

        async def site(activity: Callable[[Any, A], R], arg: A, *,
                       start_to_close_timeout: timedelta = timedelta(minutes=10),
                       heartbeat_timeout: timedelta = SITE_HEARTBEAT) -> R:
            return await workflow.execute_activity_method(
                activity, arg, task_queue=queue, summary=f"{activity_name(activity)} {r.target}",
                start_to_close_timeout=start_to_close_timeout, retry_policy=retry(),
                heartbeat_timeout=heartbeat_timeout)

        await record_job(Operation.RESTORE, "RUNNING", vm=str(r.target))
        if req.mode == RestoreMode.INPLACE:
            phase("power-off", f"{r.target}")
            vm_id = await site(BackupApi.find_vm, r.target)
            await site(RestoreApi.set_power, PowerInput(cluster=r.target.cluster, vm_id=vm_id, on=False))
            phase("configure", "the point's configuration")
            await site(RestoreApi.apply_config, SnapshotRef(cluster=r.target.cluster, vm_id=vm_id, snapshot_id="",
                                                            config=r.config))
        else:
            phase("create-vm", f"{r.target} from point {r.point_id}")
            created = await site(RestoreApi.create_vm_for_restore, CreateVMInput(
                cluster=r.target.cluster, config=r.config, network_mapping=req.network_mapping))
            vm_id = created.vm_id
        undo = req.mode == RestoreMode.REBUILD and workflow.patched(REBUILD_UNDO)
        try:
            phase("write", f"point {r.point_id} -> {r.target}")
            written = await site(
                RestoreApi.restore_disks,
                RestoreDisksInput(restore=r, vm_id=vm_id, new_vm=req.mode == RestoreMode.REBUILD),
                # Short: the server sees durable progress every 8 s (the core throttles heartbeats to 80%).
                start_to_close_timeout=timedelta(hours=24), heartbeat_timeout=TRANSFER_HEARTBEAT)
            if req.power_on:
                phase("power-on")
                await site(RestoreApi.set_power, PowerInput(cluster=r.target.cluster, vm_id=vm_id, on=True))
        except BaseException as e:
            if undo:
                phase("undo", f"delete the new VM {r.target}: {failure_text(e)}")
                await site(ReplicationApi.delete_vm, VMAt(cluster=r.target.cluster, vm_id=vm_id))
            raise
        result = RestoreResult(point_id=r.point_id, vm=r.target, vm_id=vm_id, written_bytes=written.written_bytes,
                               total_bytes=written.total_bytes, powered_on=req.power_on)
        await record_job(Operation.RESTORE, "SUCCESS", vm=str(r.target), result=result.model_dump(mode="json"),
                         finished=True)
        phase("done", f"wrote {written.written_bytes} of {written.total_bytes} bytes")
        return result
