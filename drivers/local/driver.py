"""LocalDriver: the embedded ClusterDriver. A cluster is a directory (layout.py), a VM a
record plus sparse live disks, a snapshot an empty directory that fills with undo stores
as the VM overwrites blocks (disk.py, undo.py). Safe for several processes at once (flock)
and against a kill at any point (atomic renames, durable undo before live writes)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.base import (
    AlreadyExists,
    Bytes,
    DriverError,
    GuestToolsMissing,
    InvalidState,
    NotFound,
    OperationTimeout,
    Unsupported,
    block_runs_to_extents,
    blocks_to_extents,
    check_config,
)
from drivers.local.disk import COW_BATCH, DiskChain, LocalDiskHandle, writable_chain
from drivers.local.layout import (
    FORMAT,
    ClusterPaths,
    VMPaths,
    atomic_write_json,
    check_cluster_root,
    check_snap_id,
    fsync_dir,
    locked,
    safe_name,
)
from drivers.local.meta import VMRecord, load_record, save_record
from drivers.local.names import NameIndex
from drivers.local.recovery import repair
from drivers.local.undo import merge_into
from models.inventory import VM, Consistency, Extent, GuestSigns, PowerState, SnapshotInfo, VMConfig

BLOCK_SIZE = 64 * 1024


class LocalDriver:
    """ClusterDriver over a directory. Stateless between calls (every call re-reads what it
    needs under the right lock), so one instance may serve many threads."""

    def __init__(self, root: str | os.PathLike[str], cluster: str | None = None, *,
                 lock_timeout_s: float = 120.0) -> None:
        self.paths = ClusterPaths(Path(root).absolute())
        self.names = NameIndex(self.paths)
        self.lock_timeout_s = lock_timeout_s
        meta = self._open_or_init(cluster)
        self.cluster: str = meta["name"]
        self.block_size: int = meta["block_size"]

    def _open_or_init(self, cluster: str | None) -> dict[str, Any]:
        p = self.paths
        if not p.meta.exists():
            check_cluster_root(p.root)  # never adopt a foreign directory (its tmp/ would be emptied)
            name = safe_name(cluster or p.root.name, "cluster name")
            p.root.mkdir(parents=True, exist_ok=True)
            os.close(os.open(p.lock, os.O_RDWR | os.O_CREAT, 0o644))
            with locked(p.lock, True, self.lock_timeout_s, f"cluster at {p.root}"):
                if not p.meta.exists():  # another process may have won the race
                    p.vms.mkdir(exist_ok=True)
                    p.tmp.mkdir(exist_ok=True)
                    atomic_write_json(p.meta, {"format": FORMAT, "name": name, "block_size": BLOCK_SIZE})
        meta = json.loads(p.meta.read_text())
        if meta.get("format") != FORMAT:
            raise DriverError(f"{p.root} is not a local cluster of format {FORMAT} (found {meta.get('format')!r})")
        if cluster is not None and cluster != meta["name"]:
            raise DriverError(f"{p.root} holds cluster {meta['name']!r}, not {cluster!r}")
        return meta

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _cluster_locked(self) -> Iterator[None]:
        with locked(self.paths.lock, True, self.lock_timeout_s, f"cluster {self.cluster!r}"):
            for leftover in self.paths.tmp.iterdir():  # staging/trash of killed callers
                shutil.rmtree(leftover, ignore_errors=True)
            yield

    @contextmanager
    def _vm(self, vm_id: str, exclusive: bool = True) -> Iterator[tuple[VMPaths, VMRecord]]:
        p = self.paths.vm(vm_id)
        with locked(p.lock, exclusive, self.lock_timeout_s, f"VM {vm_id}"):
            rec = load_record(p.meta)  # after the lock: it may have been deleted meanwhile
            if exclusive:
                repair(p, rec, self.block_size)
            yield p, rec

    def _scan(self) -> Iterator[VMRecord]:
        for d in sorted(self.paths.vms.iterdir()):
            try:
                yield load_record(d / "vm.json")
            except (NotFound, ValueError):
                continue  # deleted while we listed

    def _check_config(self, config: VMConfig) -> VMConfig:
        return check_config(config)

    def _name_taken(self, name: str, except_id: str | None = None) -> str | None:
        """The id of another VM named `name`. Under the cluster lock: the index is complete."""
        self.names.ensure_complete(self._scan)
        rec = self.names.lookup(name)
        return rec.id if rec is not None and rec.id != except_id else None

    @staticmethod
    def _new_id(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    # ------------------------------------------------------------------ inventory
    def list_vms(self) -> list[VM]:
        return sorted((r.to_vm(self.cluster) for r in self._scan()), key=lambda v: v.name)

    def get_vm(self, vm_id: str) -> VM:
        return load_record(self.paths.vm(vm_id).meta).to_vm(self.cluster)

    def find_vm(self, name: str) -> VM | None:
        safe_name(name, "VM name")
        if (rec := self.names.lookup(name)) is not None:
            return rec.to_vm(self.cluster)
        if self.names.complete():
            return None  # every VM has its entry
        for r in self._scan():  # a cluster from before the index, not yet filled by a writer
            if r.config.name == name:
                return r.to_vm(self.cluster)
        return None

    # ------------------------------------------------------------------ lifecycle
    def create_vm(self, config: VMConfig) -> VM:
        config = self._check_config(config)
        with self._cluster_locked():
            if (other := self._name_taken(config.name)) is not None:
                raise AlreadyExists(f"cluster {self.cluster!r} already has a VM named {config.name!r} ({other})")
            vm_id = self._new_id("vm")
            stage = VMPaths(self.paths.tmp / vm_id)
            for d in (stage.dir, stage.disks, stage.snaps):
                d.mkdir()
            os.close(os.open(stage.lock, os.O_RDWR | os.O_CREAT, 0o644))
            for disk in config.disks:
                fd = os.open(stage.live(disk.name), os.O_RDWR | os.O_CREAT, 0o644)
                os.ftruncate(fd, disk.size_bytes)  # sparse: costs no space until written
                if not disk.thin:  # thick: all space reserved now (reads stay zeros, extents stay holes)
                    os.posix_fallocate(fd, 0, disk.size_bytes)
                os.close(fd)
            for d in (stage.disks, stage.snaps):
                fsync_dir(d)
            rec = VMRecord(id=vm_id, config=config)
            save_record(stage.meta, rec)
            self.names.point(config.name, vm_id)  # before the VM appears: the index stays complete
            os.rename(stage.dir, self.paths.vms / vm_id)  # the VM exists from here on
            fsync_dir(self.paths.vms)
            fsync_dir(self.paths.tmp)
        return rec.to_vm(self.cluster)

    def delete_vm(self, vm_id: str) -> None:
        with self._cluster_locked():
            with self._vm(vm_id) as (p, rec):
                if rec.power_state == PowerState.RUNNING:
                    raise InvalidState(f"VM {rec.config.name!r} ({vm_id}) is RUNNING; power it off before deleting it")
                trash = self.paths.tmp / f"deleted-{vm_id}"
                os.rename(p.dir, trash)  # gone from here on; the rest is cleanup
                fsync_dir(self.paths.vms)
                self.names.forget(rec.config.name, vm_id)
            shutil.rmtree(trash, ignore_errors=True)

    def update_vm_config(self, vm_id: str, config: VMConfig) -> VM:
        config = self._check_config(config)
        with self._cluster_locked(), self._vm(vm_id) as (p, rec):
            self._no_pending(rec)
            if config.name != rec.config.name and (other := self._name_taken(config.name, vm_id)):
                raise AlreadyExists(f"cluster {self.cluster!r} already has a VM named {config.name!r} ({other})")
            old = {d.name: d for d in rec.config.disks}
            for d in config.disks:
                if d.name in old and d.size_bytes < old[d.name].size_bytes:
                    raise Unsupported(
                        f"disk {d.name!r} of VM {rec.config.name!r} ({vm_id}) cannot shrink from "
                        f"{old[d.name].size_bytes} to {d.size_bytes} bytes (data beyond the new size "
                        "would be lost); restore into a new VM instead"
                    )
            # grow and add first: invisible until the record says so
            for d in config.disks:
                with writable_chain(p, rec, d.name, self.block_size) as chain:
                    chain.resize_live(d.size_bytes) if d.name in old else chain.create_live(d.size_bytes)
                    if not d.thin and chain.live_fd is not None:
                        os.posix_fallocate(chain.live_fd, 0, d.size_bytes)
            dropped = set(old) - {d.name for d in config.disks}
            renamed_from = rec.config.name if config.name != rec.config.name else None
            if renamed_from is not None:
                self.names.point(config.name, vm_id)  # before the record says so: the index stays complete
            rec.config = config
            save_record(p.meta, rec)
            if renamed_from is not None:
                self.names.forget(renamed_from, vm_id)
            for name in sorted(dropped):  # a kill here is finished by repair()
                with writable_chain(p, rec, name, self.block_size) as chain:
                    chain.remove_live()
            return rec.to_vm(self.cluster)

    # ------------------------------------------------------------------ power, network
    def _set_power(self, vm_id: str, state: PowerState) -> VM:
        with self._vm(vm_id) as (p, rec):
            if state == PowerState.RUNNING:
                self._no_pending(rec)
            if rec.power_state != state:
                rec.power_state = state
                save_record(p.meta, rec)
            return rec.to_vm(self.cluster)

    def power_on(self, vm_id: str) -> VM:
        return self._set_power(vm_id, PowerState.RUNNING)

    def power_off(self, vm_id: str) -> VM:
        return self._set_power(vm_id, PowerState.STOPPED)

    def shutdown(self, vm_id: str, timeout_s: float) -> VM:
        with self._vm(vm_id) as (p, rec):
            if rec.power_state == PowerState.STOPPED:
                return rec.to_vm(self.cluster)
            if rec.refuse_shutdown:
                # the simulated guest never reacts, so waiting would only cost time
                raise OperationTimeout(
                    f"VM {rec.config.name!r} ({vm_id}) did not shut down within {timeout_s:g}s: the guest "
                    "ignored the shutdown request (use power_off to force it)"
                )
            rec.power_state = PowerState.STOPPED
            save_record(p.meta, rec)
            return rec.to_vm(self.cluster)

    def set_guest_behavior(self, vm_id: str, *, refuse_shutdown: bool) -> VM:
        """Local-only test knob: make the simulated guest ignore graceful shutdown."""
        with self._vm(vm_id) as (p, rec):
            rec.refuse_shutdown = refuse_shutdown
            save_record(p.meta, rec)
            return rec.to_vm(self.cluster)

    def attach_network(self, vm_id: str, nic_name: str, network: str) -> VM:
        safe_name(nic_name, "NIC name")
        safe_name(network, "network name")
        with self._vm(vm_id) as (p, rec):
            for nic in rec.config.nics:
                if nic.name == nic_name:
                    if nic.network != network:
                        nic.network = network
                        save_record(p.meta, rec)
                    return rec.to_vm(self.cluster)
            raise NotFound(f"VM {rec.config.name!r} ({vm_id}) has no NIC {nic_name!r}")

    def guest_signs(self, vm_id: str) -> GuestSigns:
        """None of either: the local driver simulates no guest (a failover test falls back
        to comparing the copy's disks with the point)."""
        self.get_vm(vm_id)
        return GuestSigns()

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(self, vm_id: str, name: str,
                        consistency: Consistency = Consistency.CRASH_CONSISTENT) -> SnapshotInfo:
        safe_name(name, "snapshot name")
        consistency = Consistency(consistency)
        with self._vm(vm_id) as (p, rec):
            self._no_pending(rec)
            if consistency == Consistency.FILE_SYSTEM_CONSISTENT and not rec.config.guest_tools:
                raise GuestToolsMissing(
                    f"VM {rec.config.name!r} ({vm_id}) has no guest tools, so a FILE_SYSTEM_CONSISTENT "
                    "snapshot is impossible; take a CRASH_CONSISTENT one or install guest tools"
                )
            for s in rec.snapshots:
                if s.name == name:
                    raise AlreadyExists(f"VM {rec.config.name!r} ({vm_id}) already has a snapshot named {name!r} ({s.id})")
            for d in rec.config.disks:  # the snapshot's blocks are the live ones: make them durable
                fd = os.open(p.live(d.name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            info = SnapshotInfo(id=self._new_id("snap"), vm_id=vm_id, name=name,
                                created_at=datetime.now(UTC), consistency=consistency,
                                config=rec.config.model_copy(deep=True))
            p.snap(info.id).mkdir()
            fsync_dir(p.snaps)
            rec.snapshots.append(info)
            save_record(p.meta, rec)  # the snapshot exists from here on
            return info

    def list_snapshots(self, vm_id: str) -> list[SnapshotInfo]:
        return list(load_record(self.paths.vm(vm_id).meta).snapshots)

    def get_snapshot(self, vm_id: str, snap_id: str) -> SnapshotInfo:
        check_snap_id(vm_id, snap_id)
        rec = load_record(self.paths.vm(vm_id).meta)
        return rec.snapshots[rec.snap_index(snap_id)]

    def delete_snapshot(self, vm_id: str, snap_id: str) -> None:
        check_snap_id(vm_id, snap_id)
        with self._vm(vm_id) as (p, rec):
            k = rec.snap_index(snap_id)
            if rec.pending_rollback == snap_id:
                raise InvalidState(f"VM {rec.config.name!r} ({vm_id}) has an unfinished rollback to {snap_id}; "
                                   "run the rollback again before deleting that snapshot")
            if k > 0:  # the predecessor's view reads through this store: move what it lacks
                merge_into(p.snap(snap_id), p.snap(rec.snapshots[k - 1].id), self.block_size)
            rec.snapshots.pop(k)
            save_record(p.meta, rec)  # the snapshot is gone from here on
            shutil.rmtree(p.snap(snap_id), ignore_errors=True)

    def rollback(self, vm_id: str, snap_id: str) -> VM:
        check_snap_id(vm_id, snap_id)
        bs = self.block_size
        with self._vm(vm_id) as (p, rec):
            k = rec.snap_index(snap_id)
            if rec.power_state != PowerState.STOPPED:
                raise InvalidState(f"VM {rec.config.name!r} ({vm_id}) is {rec.power_state}; rollback to "
                                   f"{snap_id} needs it STOPPED (shut it down or power it off first)")
            target = rec.snapshots[k].config
            rec.pending_rollback = snap_id  # until done: no power-on, no new snapshots
            save_record(p.meta, rec)
            for d in target.disks:
                with writable_chain(p, rec, d.name, bs, first=k) as chain:
                    chain.resize_live(d.size_bytes)
                    # blocks written since the snapshot are the only ones that can differ
                    blocks = sorted(b for b in chain.store_blocks(0) if b * bs < d.size_bytes)
                    for i in range(0, len(blocks), COW_BATCH):
                        chain.write([(b * bs, chain.view_read(b * bs, min(bs, d.size_bytes - b * bs)))
                                     for b in blocks[i : i + COW_BATCH]])
                    chain.fsync_live()
            dropped = {d.name for d in rec.config.disks} - {d.name for d in target.disks}
            config = target.model_copy(deep=True)
            config.name = rec.config.name  # the name is the VM's identity in the cluster: kept
            rec.config, rec.pending_rollback = config, None
            save_record(p.meta, rec)
            for name in sorted(dropped):
                with writable_chain(p, rec, name, bs) as chain:
                    chain.remove_live()
            return rec.to_vm(self.cluster)

    @staticmethod
    def _no_pending(rec: VMRecord) -> None:
        if rec.pending_rollback:
            raise InvalidState(f"VM {rec.config.name!r} ({rec.id}) has an unfinished rollback to "
                               f"{rec.pending_rollback}; run rollback again first")

    # ------------------------------------------------------------------ extents
    def _disk_size(self, rec: VMRecord, disk: str, k: int | None) -> int:
        config = rec.config if k is None else rec.snapshots[k].config
        try:
            return config.disk(disk).size_bytes
        except KeyError:
            where = "the live VM" if k is None else f"snapshot {rec.snapshots[k].id}"
            raise NotFound(f"VM {rec.config.name!r} ({rec.id}): {where} has no disk {disk!r}") from None

    def allocated_extents(self, vm_id: str, disk: str, snap_id: str | None = None) -> list[Extent]:
        safe_name(disk, "disk name")
        with self._vm(vm_id, exclusive=False) as (p, rec):
            k = None if snap_id is None else rec.snap_index(check_snap_id(vm_id, snap_id))
            size = self._disk_size(rec, disk, k)
            chain = DiskChain(p, rec, disk, self.block_size, len(rec.snapshots) if k is None else k)
            try:
                runs = chain.live_runs() + [(b, b + 1) for b in chain.store_blocks(0)]
            finally:
                chain.close()
            return block_runs_to_extents(runs, self.block_size, size)

    def changed_extents(self, vm_id: str, disk: str, base_snap_id: str,
                        snap_id: str | None = None) -> list[Extent]:
        safe_name(disk, "disk name")
        with self._vm(vm_id, exclusive=False) as (p, rec):
            i = rec.snap_index(check_snap_id(vm_id, base_snap_id))
            j = len(rec.snapshots) if snap_id is None else rec.snap_index(check_snap_id(vm_id, snap_id))
            if j < i:
                raise InvalidState(f"VM {rec.config.name!r} ({vm_id}): snapshot {snap_id} is older than "
                                   f"base {base_snap_id}; changed extents go from older to newer")
            self._disk_size(rec, disk, i)  # the base must have the disk
            size = self._disk_size(rec, disk, None if snap_id is None else j)
            chain = DiskChain(p, rec, disk, self.block_size, i)
            try:
                blocks = chain.store_blocks(0, j - i)
            finally:
                chain.close()
            return blocks_to_extents(blocks, self.block_size, size)

    # ------------------------------------------------------------------ data
    def open_disk(self, vm_id: str, disk: str, snap_id: str | None = None,
                  writable: bool = False) -> LocalDiskHandle:
        safe_name(disk, "disk name")
        p = self.paths.vm(vm_id)
        if snap_id is not None:
            check_snap_id(vm_id, snap_id)
        return LocalDiskHandle(p, vm_id, disk, snap_id, writable, self.block_size, self.lock_timeout_s)

    def read(self, vm_id: str, disk: str, offset: int, length: int, snap_id: str | None = None) -> bytes:
        with self.open_disk(vm_id, disk, snap_id) as h:
            return h.read(offset, length)

    def write(self, vm_id: str, disk: str, offset: int, data: Bytes) -> None:
        with self.open_disk(vm_id, disk, writable=True) as h:
            h.write(offset, data)
