"""The simulated ACOS block storage: each VM's volumes are qcow2 chains (drivers/qcow2, the
same layer the libvirt driver stands on; no QEMU runs a guest), a VM snapshot freezes every
volume's active file under an empty overlay, deleting one merges files, rollback copies
back. Volumes and snapshot views are exported over NBD by shared qemu-nbd servers on unix
sockets. Write leases order clients' write batches against snapshots: a change of a VM's
chains waits until no lease is held (or the held ones expired) and takes no new ones until
it is done, then ends the servers its files changed under (their clients reconnect)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from drivers.qcow2 import chains, images
from drivers.qcow2.nbd import NbdImage, NbdServer
from drivers.qcow2.state import Snap, VMState, load, save
from models.inventory import DiskSpec, Extent, VMConfig
from starter.simulators.aoc.errors import SimError, bad, not_found
from starter.simulators.aoc.store import new_id

BLOCK_SIZE = images.CLUSTER
WAIT_S = 60.0  # how long a lease or a change waits for the other kind before ResourceLocked


class VmDisks:
    """One VM's chains, servers and leases; `cond` guards them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cond = threading.Condition()
        self.leases: dict[str, float] = {}  # lease id -> expiry (monotonic)
        self.draining = False
        self.servers: dict[tuple[str, str | None], NbdServer] = {}  # (volume, snapshot or None)
        self.generation = 0  # moves whenever the live servers are ended
        self.maps: dict[tuple[str, ...], images.Map] = {}  # qemu-img maps, until the next change or write

    def map(self, chain: images.Chain) -> images.Map:
        key = tuple(str(f) for f in chain)
        if key not in self.maps:
            self.maps[key] = images.map_chain(chain)
        return self.maps[key]

    def state(self) -> VMState:
        return load(self.root / "chains.json")

    def save(self, st: VMState) -> None:
        save(self.root / "chains.json", st)


class Storage:
    def __init__(self, root: Path, lease_ttl_s: float) -> None:
        self.root = root / "volumes"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lease_ttl_s = lease_ttl_s
        # NBD sockets are this process's, not state, and a unix socket path must stay under
        # 108 bytes: a short directory of their own, not one under a (possibly deep) state dir
        self.sockets = Path(tempfile.mkdtemp(prefix="abdr-aoc-nbd-"))
        self._vms: dict[str, VmDisks] = {}
        self._lock = threading.Lock()

    def vm(self, vm_id: str) -> VmDisks:
        with self._lock:
            if vm_id not in self._vms:
                d = self.root / vm_id
                d.mkdir(exist_ok=True)
                self._vms[vm_id] = VmDisks(d)
            return self._vms[vm_id]

    # ------------------------------------------------------------------ changes
    @contextmanager
    def changing(self, vm_id: str, end_servers: str = "all", reading: bool = False) -> Iterator[tuple[VmDisks, VMState]]:
        """Exclusive use of a VM's chains: leases drained, then the servers that would read
        files about to change ended ("all", "live" or "none"); `reading`: nothing changes."""
        v = self.vm(vm_id)
        with v.cond:
            deadline = self._until_settled(v, vm_id)
            v.draining = True
            try:
                while True:
                    t = time.monotonic()
                    held = len(v.leases)
                    v.leases = {k: e for k, e in v.leases.items() if e > t}
                    if len(v.leases) < held:  # a writer died holding its lease (released ones are gone)
                        self._flush_live(v)
                    if not v.leases:
                        break
                    if t > deadline:
                        raise bad("ResourceLocked", f"VM {vm_id} has write leases that do not end")
                    v.cond.wait(min(min(v.leases.values()), deadline) - t + 0.001)
                self._end_servers(v, end_servers)
                if end_servers != "none" or not reading:
                    v.maps.clear()
                yield v, v.state()
            finally:
                v.draining = False
                v.cond.notify_all()

    @staticmethod
    def _until_settled(v: VmDisks, vm_id: str) -> float:
        """Wait (holding v.cond) until no change of the VM's chains runs; returns the deadline
        of the wait, which the caller may go on using."""
        deadline = time.monotonic() + WAIT_S
        while v.draining:
            if not v.cond.wait(max(0.0, deadline - time.monotonic())):
                raise bad("ResourceLocked", f"the volumes of VM {vm_id} are being changed")
        return deadline

    def _end_servers(self, v: VmDisks, which: str) -> None:
        if which == "none":
            return
        for key in [k for k in v.servers if which == "all" or k[1] is None]:
            v.servers.pop(key).stop()
        v.generation += 1

    def _new_file(self, v: VmDisks, st: VMState, volume: str) -> Path:
        st.seq += 1
        return v.root / f"{volume}.{st.seq}.qcow2"

    def create_volume(self, vm_id: str, volume: str, size: int, thin: bool) -> None:
        with self.changing(vm_id, "none") as (v, st):
            f = self._new_file(v, st, volume)
            images.create(f, size, thin=thin)
            st.active[volume], st.backing[str(f)] = str(f), None
            v.save(st)

    def clone_volume(self, src_vm: str, snap_id: str, src_volume: str, vm_id: str, volume: str, thin: bool) -> None:
        """A new volume of `vm_id` holding a snapshot's view of another VM's volume. ACOS
        clones copy-on-write; the simulator copies the data, so the clone shares no file with
        the snapshot and deleting either never touches the other."""
        with self.changing(src_vm, "none", reading=True) as (_sv, src):
            top, _size = self.view(src_vm, src, src_volume, snap_id)
            with self.changing(vm_id, "none") as (v, st):
                f = self._new_file(v, st, volume)
                images.copy_chain(src.chain(top), f, thin=thin)
                st.active[volume], st.backing[str(f)] = str(f), None
                v.save(st)

    def resize_volume(self, vm_id: str, volume: str, size: int) -> None:
        with self.changing(vm_id, "live") as (v, st):
            images.resize(st.chain(st.active[volume]), size)
            v.save(st)

    def remove_volume(self, vm_id: str, volume: str) -> None:
        with self.changing(vm_id, "live") as (v, st):
            chains.drop_live(st, volume)
            v.save(st)
            self._sweep(v, st)

    def snapshot(self, vm_id: str, snap_id: str, sizes: dict[str, int]) -> None:
        """Freeze every live volume (all at one instant: no lease is held) under a new overlay."""
        with self.changing(vm_id, "live") as (v, st):
            cfg = VMConfig(name="snapshot", disks=[DiskSpec(name=vol, size_bytes=sizes[vol]) for vol in st.active])
            snap = Snap(id=snap_id, name=snap_id, created_at=datetime.now(UTC), config=cfg,
                        consistency="CRASH_CONSISTENT", files=dict(st.active))
            for vol in list(st.active):
                f = self._new_file(v, st, vol)
                images.create_overlay(f, Path(st.active[vol]), sizes[vol])
                st.backing[str(f)], st.active[vol] = st.active[vol], str(f)
            st.snapshots.append(snap)
            v.save(st)

    def delete_snapshot(self, vm_id: str, snap_id: str) -> None:
        with self.changing(vm_id) as (v, st):
            chains.forget_snapshot(st, st.snap_index(vm_id, snap_id))
            v.save(st)
            for m in list(st.merges):
                chains.commit_stopped(st, m)
                chains.relink(st, m)
                v.save(st)
            self._sweep(v, st)

    def rollback(self, vm_id: str, snap_id: str) -> None:
        with self.changing(vm_id) as (v, st):
            snap = st.snapshots[st.snap_index(vm_id, snap_id)]
            chains.rollback_disks(st, snap, lambda vol: self._new_file(v, st, vol), lambda: v.save(st))
            v.save(st)
            self._sweep(v, st)

    def delete_vm(self, vm_id: str) -> None:
        with self.changing(vm_id):
            pass
        with self._lock:
            v = self._vms.pop(vm_id, None)
        shutil.rmtree(v.root if v else self.root / vm_id, ignore_errors=True)

    @staticmethod
    def _sweep(v: VmDisks, st: VMState) -> None:
        refs = set(st.backing) | set(st.active.values())
        for f in v.root.glob("*.qcow2"):
            if str(f) not in refs:
                f.unlink(missing_ok=True)

    # ------------------------------------------------------------------ reads of metadata
    def view(self, vm_id: str, st: VMState, volume: str, snap_id: str | None) -> tuple[str, int]:
        if snap_id is None:
            if volume not in st.active:
                raise not_found(f"volume {volume} of VM {vm_id}")
            top = st.active[volume]
            return top, images.virtual_size([Path(top)])
        snap = next((s for s in st.snapshots if s.id == snap_id), None)
        if snap is None:
            raise not_found(f"snapshot {snap_id} of VM {vm_id}")
        if volume not in snap.files:
            raise not_found(f"volume {volume} in snapshot {snap_id}")
        return snap.files[volume], snap.config.disk(volume).size_bytes

    def extents(self, vm_id: str, volume: str, snap_id: str | None, base_id: str | None) -> tuple[int, list[Extent]]:
        """(size, extents): allocated ones of the view, or those changed since `base_id`."""
        with self.changing(vm_id, "none", reading=True) as (v, st):
            top, size = self.view(vm_id, st, volume, snap_id)
            if base_id is None:
                runs = images.data_runs(st.chain(top), v.map(st.chain(top)))
                return size, chains.runs_to_extents(runs, BLOCK_SIZE, size)
            order = [s.id for s in st.snapshots]
            if base_id in order and snap_id in order and order.index(snap_id) < order.index(base_id):
                raise bad("SnapshotOrder", f"snapshot {snap_id} is older than base {base_id}")
            base, _ = self.view(vm_id, st, volume, base_id)
            return size, chains.runs_to_extents(chains.changed_runs(st, top, base, v.map), BLOCK_SIZE, size)

    # ------------------------------------------------------------------ data plane
    def export(self, vm_id: str, volume: str, snap_id: str | None) -> tuple[str, int, int]:
        """(NBD URI, size, generation) of a view; the live view's server is writable (write
        through a lease), a snapshot's is read-only."""
        v = self.vm(vm_id)
        with v.cond:
            self._until_settled(v, vm_id)
            st = v.state()
            top, size = self.view(vm_id, st, volume, snap_id)
            server = v.servers.get((volume, snap_id))
            if server is None or server.proc.poll() is not None:
                sock = self.sockets / f"{new_id()}.sock"
                try:
                    server = NbdServer(st.chain(top), sock, writable=snap_id is None)
                except images.ImageError as e:
                    raise SimError(500, "StorageError", str(e)) from None
                v.servers[(volume, snap_id)] = server
            return server.uri, size, v.generation

    def acquire(self, vm_id: str, volume: str) -> tuple[str, str, int, int]:
        """A write lease on a live volume: (lease id, URI, size, generation)."""
        uri, size, gen = self.export(vm_id, volume, None)
        v = self.vm(vm_id)
        with v.cond:
            if v.draining or gen != v.generation:
                raise bad("ResourceLocked", f"the volumes of VM {vm_id} are being changed")
            lease = new_id()
            v.leases[lease] = time.monotonic() + self.lease_ttl_s
            v.maps.clear()  # the live files will change
            return lease, uri, size, gen

    @staticmethod
    def _flush_live(v: VmDisks) -> None:
        """A writer killed mid-batch leaves its last writes in the shared live server's
        metadata cache: reads through the server see them, `qemu-img map` of the file would
        not, and changed extents would miss them. Flush them into the files first."""
        for (_volume, snap), server in v.servers.items():
            if snap is None and server.proc.poll() is None:
                img = NbdImage.connect(server.uri, writable=True)
                try:
                    img.flush()
                finally:
                    img.close()
        v.maps.clear()

    def release(self, vm_id: str, lease: str) -> None:
        v = self.vm(vm_id)
        with v.cond:
            expiry = v.leases.pop(lease, None)
            v.cond.notify_all()
        if expiry is None or expiry < time.monotonic():
            raise bad("LeaseExpired", f"write lease {lease} of VM {vm_id} expired before it was released: "
                      "a snapshot may have been taken in the middle of its writes")

    def guest_write(self, vm_id: str, volume: str, offset: int, data: bytes) -> None:
        """A write as the VM's guest makes it: inside a lease, flushed before the lease goes."""
        lease, uri, _size, _gen = self.acquire(vm_id, volume)
        try:
            img = NbdImage.connect(uri, writable=True)
            try:
                img.write_many([(offset, data)])
                img.flush()
            finally:
                img.close()
        finally:
            self.release(vm_id, lease)

    def stop_all(self) -> None:
        with self._lock:
            vms = list(self._vms.values())
        for v in vms:
            with v.cond:
                self._end_servers(v, "all")
        shutil.rmtree(self.sockets, ignore_errors=True)
