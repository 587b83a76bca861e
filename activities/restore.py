"""Restore activities of a site worker: power, configuration, VM creation and writing a
point's disks (heartbeating; a retry resumes at the last confirmed chunk)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import InvalidRequest, translate_errors
from activities.heartbeat import Checkpoint, resume_details
from activities.resources import Resources
from activities.slots import SlotRequest, TransferKind, holds_slot
from drivers.base import BatchedWrites, ClusterDriver
from drivers.ratelimit import limit_iops
from drivers.repository.manifest import DIGEST_LEN, ChunkTable, DiskManifest
from drivers.repository.reader import DiskRestorer, RestoreProgress
from models.activity_api import RestoreApi
from models.inventory import PowerState, VMConfig
from models.jobs import (
    CreateVMInput,
    PowerInput,
    RestoreDisksInput,
    RestoreDisksResult,
    SnapshotRef,
    TransferProgress,
)
from models.replication import NetworkMapping

UNKNOWN_ENTRY = b"\xff" * DIGEST_LEN  # "content not known": never equal to a real entry


def map_networks(config: VMConfig, mapping: list[NetworkMapping]) -> VMConfig:
    """Source network -> target network for every NIC that has a mapping."""
    table = {m.source: m.target for m in mapping}
    nics = [n.model_copy(update={"network": table.get(n.network, n.network)}) for n in config.nics]
    return config.model_copy(update={"nics": nics})


def known_content(driver: ClusterDriver, vm_id: str, disk: DiskManifest, base_snapshot: str) -> DiskManifest:
    """What the live disk holds, as a manifest: the base point's entries, except chunks the
    changed-block tracking says were written since the base snapshot (marked unknown)."""
    table = bytearray(disk.chunks.packed)
    cs = disk.chunk_size
    for e in driver.changed_extents(vm_id, disk.name, base_snapshot, None):
        for i in range(e.offset // cs, min(-(-e.end // cs), disk.chunk_count)):
            table[i * DIGEST_LEN:(i + 1) * DIGEST_LEN] = UNKNOWN_ENTRY
    return disk.model_copy(update={"chunks": ChunkTable(bytes(table))})


class RestoreActivities(RestoreApi):
    def __init__(self, res: Resources) -> None:
        self.res = res

    @activity.defn(name="set_power")
    @translate_errors
    def set_power(self, inp: PowerInput) -> None:
        driver = self.res.driver(inp.cluster)
        state = driver.get_vm(inp.vm_id).power_state
        if inp.on and state != PowerState.RUNNING:
            driver.power_on(inp.vm_id)
        elif not inp.on and state != PowerState.STOPPED:
            driver.power_off(inp.vm_id)

    @activity.defn(name="apply_config")
    @translate_errors
    def apply_config(self, inp: SnapshotRef) -> None:
        self.res.driver(inp.cluster).update_vm_config(inp.vm_id, inp.config)

    @activity.defn(name="create_vm_for_restore")
    @translate_errors
    def create_vm_for_restore(self, inp: CreateVMInput) -> SnapshotRef:
        driver = self.res.driver(inp.cluster)
        config = map_networks(inp.config, inp.network_mapping)
        marker = f"abdr restore of {activity.info().workflow_id}"
        existing = driver.find_vm(config.name)
        if existing is not None:
            if existing.config.description != marker:  # not ours: a name clash, refuse
                raise InvalidRequest(f"a VM named {config.name!r} already exists on cluster {inp.cluster!r}")
            return SnapshotRef(cluster=inp.cluster, vm_id=existing.id, snapshot_id="", config=existing.config)
        vm = driver.create_vm(config.model_copy(update={"description": marker}))
        return SnapshotRef(cluster=inp.cluster, vm_id=vm.id, snapshot_id="", config=vm.config)

    @activity.defn(name="restore_disks")
    @translate_errors
    @holds_slot(lambda inp: SlotRequest(TransferKind.RESTORE, inp.restore.target.cluster))
    def restore_disks(self, inp: RestoreDisksInput) -> RestoreDisksResult:
        r = inp.restore
        repo = self.res.repository(r.repository_path)
        driver = self.res.driver(r.target.cluster)
        point = repo.get_point(r.point_id)
        base = repo.get_point(r.base.point_id) if (not inp.new_vm and r.base.point_id) else None
        resumed = resume_details(TransferProgress) or TransferProgress()
        if resumed.bytes_done:
            activity.logger.info("resuming restore of %s at disk %d chunk %d (%d bytes confirmed)",
                                 r.point_id, resumed.disk_index, resumed.chunk_index, resumed.bytes_done)
        total = sum(d.size for d in point.disks)
        written = done_before = 0
        for index, dm in enumerate(point.disks):
            if index < resumed.disk_index:
                done_before += dm.size
                continue
            current = None
            if base is not None and r.base.snapshot_id:
                try:
                    current = known_content(driver, inp.vm_id, base.disk(dm.name), r.base.snapshot_id)
                except KeyError:
                    current = None
            start = resumed.chunk_index if index == resumed.disk_index else 0
            with driver.open_disk(inp.vm_id, dm.name, writable=True) as handle:
                # Reported progress covers only flushed writes: a retry resumes there exactly.
                batched = BatchedWrites(handle)
                checkpoint = Checkpoint(batched.flush)

                def progress(p: RestoreProgress, index: int = index, offset: int = done_before,
                             checkpoint: Checkpoint = checkpoint) -> None:
                    checkpoint(TransferProgress(disk_index=index, chunk_index=p.chunk_index,
                                                bytes_done=offset + p.bytes_done, bytes_total=total), force=p.done)

                restorer = DiskRestorer(repo, point, dm.name, limit_iops(batched.write, r.write_iops),
                                        target_is_zero=inp.new_vm, current=current)
                # A callback per MiB written (cheap); the checkpoint decides by elapsed time.
                result = restorer.run(resume_from=start, on_progress=progress, progress_bytes=1 << 20)
                batched.drain()  # what is left; the handle's close flushes it
            written += result.bytes_written
            done_before += dm.size
        return RestoreDisksResult(written_bytes=written, total_bytes=total,
                                  resumed_bytes=resumed.bytes_done)
