"""One disk of a local VM: the live sparse file plus the undo stores of a run of snapshots,
and the three things done with them: read a snapshot's view, write live with copy-on-write,
and compute extents.

View of snapshot S, block b = the undo store of the first snapshot at or after S holding b,
else the live file. A write first copies each block it touches, if the newest snapshot's
store lacks it, into that store (durably), then writes live. So every snapshot's view is
fixed, and the blocks written between S_i and S_j are exactly the union of the stores of
S_i..S_(j-1): changed-block tracking without reading data.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Self, TypeVar

from drivers.base import Bytes, InvalidState, NotFound, OutOfRange
from drivers.fsio import BulkWriter
from drivers.local.layout import VMPaths, acquire, fsync_dir
from drivers.local.meta import VMRecord, load_record_fd
from drivers.local.undo import UndoStore

T = TypeVar("T")
COW_BATCH = 256  # blocks preserved per durability barrier (16 MiB of memory at 64 KiB)


class DiskChain:
    """Live file and undo stores of `disk` for snapshots rec.snapshots[first:] (first may be
    len(snapshots): live only). Callers hold the VM lock: SH to read, EX to write."""

    def __init__(self, paths: VMPaths, rec: VMRecord, disk: str, block_size: int, first: int,
                 writable: bool = False) -> None:
        self.paths, self.rec, self.disk, self.bs = paths, rec, disk, block_size
        self.writable = writable
        self.snap_ids = [s.id for s in rec.snapshots[first:]]
        self.stores: list[UndoStore | None] = [self._open_store(s) for s in self.snap_ids]
        self.live_fd: int | None = None
        self.bulk: BulkWriter | None = None  # writes into the live file (writable chains)
        self._open_live()

    # -- opening
    def _open_store(self, snap_id: str, create: bool = False) -> UndoStore | None:
        d = self.paths.snap(snap_id)
        try:
            return UndoStore(d, self.disk, self.bs)
        except FileNotFoundError:
            if not create:
                return None  # never written since that snapshot: an empty store
        st = UndoStore(d, self.disk, self.bs, create=True)
        fsync_dir(d)  # the store's records are only durable once its name is
        return st

    def _open_live(self) -> None:
        try:
            self._set_live(os.open(self.paths.live(self.disk), os.O_RDWR if self.writable else os.O_RDONLY))
        except FileNotFoundError:
            self._set_live(None)  # a removed disk reads as zeros

    def _set_live(self, fd: int | None) -> None:
        if self.bulk is not None:
            self.bulk.close()
            self.bulk = None
        if self.live_fd is not None and self.live_fd != fd:
            os.close(self.live_fd)
        self.live_fd = fd
        if fd is not None and self.writable:
            self.bulk = BulkWriter(fd)

    def refresh(self) -> None:
        """See stores created and records appended by others since we last looked."""
        for i, st in enumerate(self.stores):
            if st is None:
                self.stores[i] = self._open_store(self.snap_ids[i])
            else:
                st.refresh()
        if self.live_fd is None:
            self._open_live()

    def close(self) -> None:
        for st in self.stores:
            if st is not None:
                st.close()
        self.stores = []
        self._set_live(None)

    # -- reading
    def live_read(self, offset: int, length: int) -> bytes:
        if self.live_fd is None:
            return bytes(length)
        data = os.pread(self.live_fd, length, offset)
        return data if len(data) == length else data + bytes(length - len(data))

    def view_read(self, offset: int, length: int) -> bytes:
        """The view of snapshot snap_ids[0] (the chain's first)."""
        stores = [s for s in self.stores if s is not None and s.index]
        if not stores:
            return self.live_read(offset, length)
        bs, end = self.bs, offset + length
        out: list[bytes] = []
        pos = offset
        for b in range(offset // bs, (end - 1) // bs + 1):
            for st in stores:
                if b in st.index:
                    lo, hi = max(b * bs, offset), min((b + 1) * bs, end)
                    if lo > pos:
                        out.append(self.live_read(pos, lo - pos))
                    out.append(st.read(b, lo - b * bs, hi - lo))
                    pos = hi
                    break
        if pos < end:
            out.append(self.live_read(pos, end - pos))
        return b"".join(out)

    # -- writing (EX lock held)
    def cow_target(self) -> UndoStore | None:
        """The newest snapshot's store, created on first need; None if no snapshot shows
        this disk (then writes need no preservation)."""
        if not self.rec.snapshots or not self.rec.cow_needed(self.disk):
            return None
        if not self.snap_ids or self.snap_ids[-1] != self.rec.snapshots[-1].id:
            raise AssertionError("chain does not reach the newest snapshot")
        if self.stores[-1] is None:
            self.stores[-1] = self._open_store(self.snap_ids[-1], create=True)
        return self.stores[-1]

    def preserve(self, blocks: Iterable[int]) -> None:
        """Copy the live content of `blocks` into the newest store where it lacks them, one
        durability barrier per COW_BATCH blocks."""
        target = self.cow_target()
        if target is None:
            return
        need = sorted(set(blocks) - target.index.keys())
        for i in range(0, len(need), COW_BATCH):
            batch = need[i : i + COW_BATCH]
            target.append([(b, self.live_read(b * self.bs, self.bs)) for b in batch])

    def write(self, writes: list[tuple[int, Bytes]]) -> None:
        """Write into live; the undo data and index are durable before any live byte changes."""
        if self.live_fd is None:
            self.create_live(0)
        bs = self.bs
        self.preserve(
            b for off, data in writes if data for b in range(off // bs, (off + len(data) - 1) // bs + 1)
        )
        assert self.bulk is not None
        self.bulk.write_many(writes)

    def create_live(self, size: int) -> None:
        path = self.paths.live(self.disk)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(fd).st_size < size:
            os.ftruncate(fd, size)
        fsync_dir(path.parent)
        self._set_live(fd)

    def resize_live(self, size: int) -> None:
        """Set the live size; bytes cut off are preserved first (newer snapshots may show them)."""
        if self.live_fd is None:
            self.create_live(size)
            return
        cur = os.fstat(self.live_fd).st_size
        if size < cur:
            first = size // self.bs
            self.preserve(b for s, e in self.live_runs() for b in range(max(s, first), e))
        if size != cur:
            os.ftruncate(self.live_fd, size)
            os.fsync(self.live_fd)

    def remove_live(self) -> None:
        """Drop the live file (a disk leaving the config) after preserving what it holds."""
        if self.live_fd is None:
            return
        self.preserve(b for s, e in self.live_runs() for b in range(s, e))
        self._set_live(None)
        self.paths.live(self.disk).unlink(missing_ok=True)
        fsync_dir(self.paths.disks)

    def fsync_live(self) -> None:
        if self.live_fd is not None:
            os.fsync(self.live_fd)

    # -- extents
    def live_runs(self) -> list[tuple[int, int]]:
        """Allocated [start, end) block runs of the live file (SEEK_DATA/SEEK_HOLE)."""
        if self.live_fd is None:
            return []
        fd, bs = self.live_fd, self.bs
        size = os.fstat(fd).st_size
        runs: list[tuple[int, int]] = []
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:
                    break
                raise
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            runs.append((data // bs, (hole + bs - 1) // bs))
            pos = hole
        return runs

    def store_blocks(self, start: int, stop: int | None = None) -> set[int]:
        """Union of the block sets of stores[start:stop] (indexes into this chain)."""
        out: set[int] = set()
        for st in self.stores[start:stop]:
            if st is not None:
                out.update(st.index.keys())
        return out


@contextmanager
def writable_chain(paths: VMPaths, rec: VMRecord, disk: str, block_size: int,
                   first: int | None = None) -> Iterator[DiskChain]:
    """A writable chain reaching the newest snapshot (the copy-on-write target); EX lock held."""
    chain = DiskChain(paths, rec, disk, block_size, max(len(rec.snapshots) - 1, 0) if first is None else first,
                      writable=True)
    try:
        yield chain
    finally:
        chain.close()


class LocalDiskHandle:
    """DiskHandle of the local driver. Live read-only handles read the file directly; snapshot
    handles take the VM lock shared per call and pick up concurrent COW appends (a few
    syscalls, no metadata parse unless vm.json was replaced); writable handles take it
    exclusive per call."""

    def __init__(self, paths: VMPaths, vm_id: str, disk: str, snap_id: str | None, writable: bool,
                 block_size: int, lock_timeout_s: float) -> None:
        if writable and snap_id is not None:
            raise InvalidState(f"snapshot {snap_id} of VM {vm_id} is read-only; open the live disk to write")
        self._paths, self._vm_id, self._disk, self._snap_id = paths, vm_id, disk, snap_id
        self._writable, self._bs, self._timeout = writable, block_size, lock_timeout_s
        self._what = f"VM {vm_id}"
        self._mutex = threading.Lock()
        self._chain: DiskChain | None = None
        self._meta_fd: int | None = None
        self._lock_fd = -1
        try:
            self._lock_fd = os.open(paths.lock, os.O_RDWR)
        except FileNotFoundError:
            raise NotFound(f"VM {vm_id} does not exist") from None
        self.size = 0
        try:
            self._locked_call(writable, lambda chain: None, load=True)
        except BaseException:
            self.close()
            raise

    # -- plumbing
    def _load(self) -> None:
        """(Re)open everything from vm.json; on failure the handle stays unloaded, so the next
        call tries again (and fails the same way if the snapshot or VM is gone)."""
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._meta_fd is not None:
            os.close(self._meta_fd)
            self._meta_fd = None
        try:
            meta_fd = os.open(self._paths.meta, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"VM {self._vm_id} does not exist (deleted?)") from None
        try:
            rec = load_record_fd(meta_fd)
            if self._snap_id is not None:
                first = rec.snap_index(self._snap_id)
                config, where = rec.snapshots[first].config, f"snapshot {self._snap_id} of VM {rec.config.name!r}"
            else:
                first = max(len(rec.snapshots) - 1, 0) if self._writable else len(rec.snapshots)
                config, where = rec.config, f"VM {rec.config.name!r} ({rec.id})"
            try:
                size = config.disk(self._disk).size_bytes
            except KeyError:
                raise NotFound(f"{where} has no disk {self._disk!r}") from None
            chain = DiskChain(self._paths, rec, self._disk, self._bs, first, self._writable)
        except BaseException:
            os.close(meta_fd)
            raise
        if self._writable and chain.live_fd is None:
            chain.create_live(size)
        self._meta_fd, self._chain, self.size = meta_fd, chain, size

    def _locked_call(self, exclusive: bool, fn: Callable[[DiskChain], T], load: bool = False) -> T:
        """Run fn(chain) under the VM lock, after catching up with other writers."""
        with self._mutex:
            if self._lock_fd < 0:
                raise InvalidState(f"disk {self._disk!r} of {self._what} is closed")
            acquire(self._lock_fd, exclusive, self._timeout, self._what)
            try:
                if load or self._chain is None or self._meta_fd is None or os.fstat(self._meta_fd).st_nlink == 0:
                    self._load()  # vm.json was replaced: snapshots or config changed
                else:
                    self._chain.refresh()  # only appends to undo stores can have happened
                assert self._chain is not None
                return fn(self._chain)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _check_range(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise OutOfRange(
                f"range [{offset}, {offset + length}) is outside disk {self._disk!r} of {self._what} "
                f"(size {self.size})"
            )

    # -- DiskHandle
    def read(self, offset: int, length: int) -> bytes:
        self._check_range(offset, length)
        if length == 0:
            return b""
        if self._snap_id is None and not self._writable:
            assert self._chain is not None
            return self._chain.live_read(offset, length)  # live: no lock, like a real disk
        # snapshot view (or live through a writable handle): under the shared lock, so a
        # concurrent writer's copy-on-write is either fully visible or not started
        if self._snap_id is None:
            return self._locked_call(False, lambda chain: chain.live_read(offset, length))
        return self._locked_call(False, lambda chain: chain.view_read(offset, length))

    def write(self, offset: int, data: Bytes) -> None:
        self.write_many([(offset, data)])

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        if not self._writable:
            raise InvalidState(f"disk {self._disk!r} of {self._what} was opened read-only")
        batch = [(off, data) for off, data in writes if len(data)]  # bytes-like, not copied
        for off, data in batch:
            self._check_range(off, len(data))
        if batch:
            self._locked_call(True, lambda chain: chain.write(batch))

    def flush(self) -> None:
        if self._writable and self._chain is not None:
            with self._mutex:
                self._chain.fsync_live()

    def close(self) -> None:
        with self._mutex:
            if self._chain is not None:
                self._chain.close()
                self._chain = None
            for fd in (self._meta_fd, self._lock_fd):
                if fd is not None and fd >= 0:
                    os.close(fd)
            self._meta_fd = None
            self._lock_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
