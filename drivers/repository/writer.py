"""Backup: a session per restore point, a pipelined writer per disk.

Pipeline (bounded whatever the disk size):

    reader thread --(window of W chunk buffers)--> K worker threads --> main thread
    read_at pieces        zero-check, BLAKE3, dedup lookup,            in-order chunk table,
                          zstd + write new chunk                       checkpoints, progress

BLAKE3, zstd and file I/O release the GIL, so K workers use K cores. Only the reader and
workers hold chunk data (at most W buffers); the main thread sees 32-byte digests.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from drivers.repository.config import SyncMode
from drivers.repository.errors import PointExists, RepositoryError, SourceChanged
from drivers.repository.extents import ReadPlan, merge
from drivers.repository.fsutil import atomic_write, syncfs
from drivers.repository.journal import Journal
from drivers.repository.locks import BackupLease
from drivers.repository.manifest import (
    DIGEST_LEN,
    ZERO,
    DiskManifest,
    PointDraft,
    RestorePoint,
)
from drivers.repository.verify import known_bad
from models.inventory import Extent

if TYPE_CHECKING:
    from drivers.repository import Repository

ReadAt = Callable[[int, int], bytes]
ProgressCallback = Callable[["Progress"], None]

CHECKPOINT_SECONDS = 15.0
CHECKPOINT_BYTES = 1 << 30
KNOWN_CACHE = 1 << 20
BATCH_BYTES = 1 << 20  # digests remembered as present within one disk's backup


class Progress(BaseModel):
    """Heartbeat payload. `chunk_index`/`bytes_done` are durable: a new process resumes there.
    `scanned_index` is how far processing got (may be ahead, not yet durable)."""

    disk: str
    chunk_index: int
    chunk_count: int
    bytes_done: int
    bytes_total: int
    scanned_index: int = 0
    done: bool = False


def _default_workers() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)))


class DiskWriter:
    """Backs up one disk into the session's staging area; `run()` resumes from the staging
    journal if an earlier attempt (any process) left one for the same job."""

    def __init__(
        self,
        session: "BackupSession",
        name: str,
        size: int,
        read_at: ReadAt,
        *,
        allocated: Sequence[Extent] | None = None,
        changed: Sequence[Extent] | None = None,
        source_id: str = "",
        workers: int | None = None,
        window: int | None = None,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
        compress: bool = True,
        read_bytes: int | None = None,
    ) -> None:
        if allocated is not None and changed is not None:
            raise ValueError("give allocated extents (full backup) or changed extents (incremental), not both")
        self.session = session
        self.repo = session.repo
        self.name = name
        self.size = size
        self.read_at = read_at
        self.source_id = source_id
        self.cs = self.repo.config.chunk_size
        self.workers = workers or _default_workers()
        self.batch = max(1, BATCH_BYTES // self.cs)
        # Adjacent whole chunks read with one read_at of up to this many bytes (default: a
        # chunk per call). For sources whose cost is per call; see _read_groups.
        self.read_group = max(1, min(read_bytes or self.cs, BATCH_BYTES) // self.cs)
        self.window = window or max(4, 2 * self.workers + 2) * self.batch
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoint_bytes = checkpoint_bytes
        self.compress = compress  # new chunks stored zstd-compressed (when it helps) or raw
        session.draft.vm_config.disk(name)  # KeyError with a clear message if unknown
        if size <= 0 or size % 4096:
            raise ValueError(f"disk {name}: size {size} must be a positive multiple of 4096")
        session._writers[name] = self
        self.base_table: bytes | None
        self.header: dict[str, Any]
        if session.committed is not None:  # nothing to do: run() returns the committed disk
            dm = session.committed.disk(name)
            self.base_table, self.mode, self.header = None, "committed", {}
            self.plan = ReadPlan(dm.size, dm.chunk_size, [], whole_chunks=False)
            self._progress = Progress(disk=name, chunk_index=0, chunk_count=dm.chunk_count, bytes_done=0,
                                      bytes_total=dm.size)
            self.resumed_at = dm.chunk_count
            return

        self.base_table = None
        if changed is not None:
            base = session.base
            if base is None:
                raise RepositoryError(
                    f"disk {name}: changed extents given but point {session.point_id} has no base point")
            try:
                bdisk = base.disk(name)
            except KeyError:
                raise RepositoryError(f"disk {name} is not in base point {base.id}: back it up in full") from None
            if bdisk.chunk_size != self.cs:
                raise RepositoryError(
                    f"disk {name}: base point {base.id} uses chunk size {bdisk.chunk_size}, not {self.cs}")
            ranges = merge(changed, size)
            n = -(-size // self.cs)
            table = bytearray(bdisk.chunks.packed[: n * DIGEST_LEN])
            table += bytes(n * DIGEST_LEN - len(table))
            if bdisk.size != size:
                # Resized disk: the base's last chunk and anything beyond it must be read.
                tail = (min(bdisk.size, size) // self.cs) * self.cs
                ranges = merge([(a, b - a) for a, b in ranges] + [(tail, size - tail)], size)
            ranges = merge([(a, b - a) for a, b in ranges] + self._bad_carried(table), size)
            self.base_table = bytes(table)
            self.plan = ReadPlan(size, self.cs, ranges, whole_chunks=True)
            self.mode = "incremental"
        else:
            ranges = merge(allocated, size) if allocated is not None else [(0, size)]
            self.plan = ReadPlan(size, self.cs, ranges, whole_chunks=False)
            self.mode = "full"
        self.header = {
            "disk": name, "size": size, "chunk_size": self.cs, "mode": self.mode,
            "base_point": session.draft.base_point if self.mode == "incremental" else None,
            "source_id": source_id, "ranges": _fingerprint(self.plan.ranges),
        }
        n = self.plan.chunk_count
        self._progress = Progress(disk=name, chunk_index=0, chunk_count=n, bytes_done=0, bytes_total=size)
        self.resumed_at = 0

    def _bad_carried(self, table: bytearray) -> list[tuple[int, int]]:
        """Chunks the base names that a verify found damaged or missing and that no backup
        has stored anew since: read them from the source instead of carrying a bad entry."""
        out = []
        for d in known_bad(self.repo):
            pos = table.find(d)
            while pos != -1:
                if pos % DIGEST_LEN == 0 and not self.repo.store.present(d, 0.0):
                    out.append((pos // DIGEST_LEN * self.cs, self.cs))
                pos = table.find(d, pos + 1)
        return out

    # -- public ---------------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        return self._progress.model_copy()

    def run(self, on_progress: ProgressCallback | None = None) -> DiskManifest:
        if self.session.committed is not None:
            dm = self.session.committed.disk(self.name)
            self._set_progress(dm.chunk_count, dm.chunk_count, done=True, cb=on_progress)
            return dm
        done = self.session._done_path(self.name)
        if done.exists():
            dm = DiskManifest.model_validate_json(done.read_bytes())
            try:
                same_job = json.loads(self.session._job_path(self.name).read_text()) == self.header
            except (FileNotFoundError, ValueError):
                same_job = False
            if same_job:
                missing = self._revalidate(dm.chunks.packed)
                if missing is None:
                    self._set_progress(dm.chunk_count, dm.chunk_count, done=True, cb=on_progress)
                    return dm
            self.session._invalidate(self.name)
        return self._run(on_progress)

    def read_chunk(self, i: int) -> bytes:
        """Chunk i as the backup sees it (extent pieces read, the rest zero)."""
        return self._assemble(i, self.plan.pieces(i))

    def _assemble(self, i: int, pieces: list[tuple[int, int]]) -> bytes:
        n = self.plan.chunk_len(i)
        if len(pieces) == 1 and pieces[0] == (i * self.cs, n):
            return self._read(*pieces[0])
        buf = bytearray(n)
        base = i * self.cs
        for off, ln in pieces:
            buf[off - base : off - base + ln] = self._read(off, ln)
        return bytes(buf)

    # -- internals ------------------------------------------------------------------------
    def _read_groups(self, start: int) -> Iterator[list[tuple[int, list[tuple[int, int]]]]]:
        """The planned chunks in index order, as groups read with one `read_at` each: runs
        of adjacent chunks read whole, up to `read_bytes`. A source's cost may be per call (an
        NBD round trip, a lock), and on a busy machine each round trip waits for the
        server to be scheduled, so one 1 MiB read is far cheaper than eight of 128 KiB.
        A chunk read in pieces (allocated extents inside it) is a group of its own."""
        group_whole = False
        group: list[tuple[int, list[tuple[int, int]]]] = []
        for i, pieces in self.plan.tasks(start):
            whole = pieces == [(i * self.cs, self.plan.chunk_len(i))]
            if group and not (whole and group_whole and group[-1][0] == i - 1 and len(group) < self.read_group):
                yield group
                group = []
            group.append((i, pieces))
            group_whole = whole
        if group:
            yield group

    def _read_group(self, group: list[tuple[int, list[tuple[int, int]]]]) -> list[bytes]:
        if len(group) == 1:
            i, pieces = group[0]
            return [self._assemble(i, pieces)]
        first, last = group[0][0], group[-1][0]
        off = first * self.cs
        data = self._read(off, last * self.cs + self.plan.chunk_len(last) - off)
        return [data[k * self.cs : (k + 1) * self.cs] for k in range(len(group))]

    def _read(self, off: int, ln: int) -> bytes:
        data = self.read_at(off, ln)
        if len(data) != ln:
            raise RepositoryError(f"disk {self.name}: short read at {off}: wanted {ln} bytes, got {len(data)}")
        return data

    def _set_progress(self, durable: int, scanned: int, *, done: bool = False,
                      cb: ProgressCallback | None = None) -> None:
        self._progress = Progress(
            disk=self.name, chunk_index=durable, chunk_count=self.plan.chunk_count,
            bytes_done=min(durable * self.cs, self.size), bytes_total=self.size,
            scanned_index=scanned, done=done,
        )
        if cb:
            cb(self.progress)

    def _revalidate(self, packed: bytes) -> int | None:
        """Touch every chunk an earlier attempt recorded (GC may have been told about them only
        by the journal, and a power loss may have torn them). Returns the first index whose
        chunk is gone, or None."""
        store, since = self.repo.store, self.session.lease.started
        seen: set[bytes] = set()
        for i in range(len(packed) // DIGEST_LEN):
            e = packed[i * DIGEST_LEN : (i + 1) * DIGEST_LEN]
            if e == ZERO or e in seen:
                continue
            if not store.present(e, since):
                return i
            seen.add(e)
        return None

    def _run(self, on_progress: ProgressCallback | None) -> DiskManifest:
        s = self.session
        atomic_write(s._job_path(self.name), json.dumps(self.header, sort_keys=True).encode(), durable=False)
        path = s._journal_path(self.name)
        journal = Journal(path, self.header)
        if journal.next_index and self._revalidate(bytes(journal.entries)) is not None:
            # Chunks the journal names are gone (staging outlived a GC, or a power loss tore
            # them): start this disk over rather than reference them.
            journal.close()
            path.unlink()
            journal = Journal(path, self.header)
        try:
            return self._pipeline(journal, on_progress)
        finally:
            journal.close()

    def _pipeline(self, journal: Journal, on_progress: ProgressCallback | None) -> DiskManifest:
        n, cs, sync = self.plan.chunk_count, self.cs, self.repo.config.sync
        table = bytearray(self.base_table) if self.base_table is not None else bytearray(n * DIGEST_LEN)
        start = journal.next_index
        table[: start * DIGEST_LEN] = journal.entries
        self.resumed_at = start
        stats = journal.stats.model_copy()
        self._set_progress(start, start, cb=on_progress)

        store, codec, since = self.repo.store, self.repo.codec, self.session.lease.started
        zero = bytes(cs)
        known: set[bytes] = set()
        stop = threading.Event()
        errors: list[BaseException] = []  # worker failures: stop everything
        read_errors: list[BaseException] = []  # source failures: drain, then stop
        slots = threading.Semaphore(self.window)  # chunk buffers alive (memory bound)
        outstanding = threading.Semaphore(16 * self.window + 1024)  # issued, not yet consumed
        # Chunks travel in batches of about BATCH_BYTES: fewer queue hand-offs and wake-ups.
        work: queue.Queue[list[tuple[int, bytes, int]] | None] = queue.Queue()
        results: queue.Queue[list[tuple[int, bytes, int, int, int]] | None] = queue.Queue()
        order: deque[int] = deque()  # planned indices read, not yet consumed, ascending
        reader_done = threading.Event()

        def acquire(sem: threading.Semaphore) -> bool:
            while not sem.acquire(timeout=0.1):
                if stop.is_set():
                    return False
            return True

        def reader() -> None:
            batch: list[tuple[int, bytes, int]] = []
            try:
                for group in self._read_groups(start):
                    for _ in group:  # a buffer slot per chunk before the group is read
                        if stop.is_set() or not acquire(outstanding):
                            return
                        if not slots.acquire(blocking=False):
                            if batch:  # never sit on buffers while waiting for the workers
                                work.put(batch)
                                batch = []
                            if not acquire(slots):
                                return
                    for (i, pieces), data in zip(group, self._read_group(group)):
                        order.append(i)
                        batch.append((i, data, sum(ln for _, ln in pieces)))
                        if len(batch) >= self.batch:
                            work.put(batch)
                            batch = []
                if batch:
                    work.put(batch)
                    batch = []
                reader_done.set()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread
                # Let the workers finish what was read: it becomes durable progress.
                read_errors.append(e)
                if batch:
                    work.put(batch)
            finally:
                for _ in range(self.workers):
                    work.put(None)

        def worker() -> None:
            try:
                while (items := work.get()) is not None:
                    out = []
                    for i, data, rb in items:
                        if stop.is_set():
                            slots.release()
                            continue
                        ln = len(data)
                        if data == (zero if ln == cs else zero[:ln]):
                            out.append((i, ZERO, 0, 0, rb))
                        else:
                            d = codec.digest(data)
                            if d in known or store.present(d, since):
                                out.append((i, d, 0, 0, rb))
                            else:
                                out.append((i, d, 1, store.put(d, data, self.compress), rb))
                            if len(known) > KNOWN_CACHE:
                                known.clear()
                            known.add(d)
                        del data
                        slots.release()
                    del items
                    results.put(out)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
                stop.set()
            finally:
                results.put(None)

        threads = [threading.Thread(target=reader, name=f"read {self.name}", daemon=True)]
        threads += [threading.Thread(target=worker, name=f"chunk {self.name}", daemon=True)
                    for _ in range(self.workers)]
        for t in threads:
            t.start()

        pending: dict[int, tuple[bytes, int, int, int]] = {}
        consumed = start  # every chunk before this index is final in `table`
        last_cp_time, last_cp_index = time.monotonic(), start

        def final_upto() -> int:
            # Chunks between planned ones are final already (zero or carried from the base).
            # Read the reader's flag before `order`: once it is set, `order` is complete.
            finished = reader_done.is_set()
            if order:
                return order[0]
            return n if finished else consumed

        def checkpoint(upto: int) -> None:
            nonlocal last_cp_time, last_cp_index
            if upto > journal.next_index:
                if sync is SyncMode.SYNCFS:
                    syncfs(self.repo.root)  # chunks durable before the journal names them
                journal.append(bytes(table[journal.next_index * DIGEST_LEN : upto * DIGEST_LEN]), stats,
                               fsync=sync is not SyncMode.NONE)
            last_cp_time, last_cp_index = time.monotonic(), upto
            self._set_progress(upto, upto, cb=on_progress)

        live = self.workers
        try:
            while live and not errors:
                try:
                    r = results.get(timeout=0.5)
                except queue.Empty:
                    r = []  # nothing new: still checkpoint by elapsed time below
                if r is None:
                    live -= 1
                elif r:
                    for i, d, new, nbytes, rb in r:
                        pending[i] = (d, new, nbytes, rb)
                    while order and order[0] in pending:
                        i = order.popleft()
                        d, new, nbytes, rb = pending.pop(i)
                        table[i * DIGEST_LEN : (i + 1) * DIGEST_LEN] = d
                        stats.read_bytes += rb
                        if new:
                            stats.new_chunks += 1
                            stats.new_bytes += nbytes
                        elif d != ZERO:
                            stats.reused_chunks += 1
                        consumed = i + 1
                        outstanding.release()
                upto = final_upto()
                self._progress.scanned_index = upto
                if (upto - last_cp_index) * cs >= self.checkpoint_bytes or (
                    time.monotonic() - last_cp_time >= self.checkpoint_seconds and upto > last_cp_index
                ):
                    checkpoint(upto)
            if errors or read_errors:
                raise (errors or read_errors)[0]
        except BaseException:
            stop.set()
            for t in threads:
                t.join()
            try:  # keep what is complete and in order, so the retry starts there
                checkpoint(order[0] if order else consumed)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
            raise
        for t in threads:
            t.join()

        stats.zero_chunks = sum(1 for k in range(n) if table[k * DIGEST_LEN : (k + 1) * DIGEST_LEN] == ZERO)
        stats.carried_chunks = n - self.plan.planned_chunks if self.mode == "incremental" else 0
        checkpoint(n)
        dm = DiskManifest(name=self.name, size=self.size, chunk_size=cs, chunks=bytes(table), stats=stats)
        atomic_write(self.session._done_path(self.name), dm.model_dump_json().encode(),
                     durable=sync is not SyncMode.NONE)
        self._set_progress(n, n, done=True, cb=on_progress)
        return dm


def _fingerprint(ranges: list[tuple[int, int]]) -> str:
    import blake3

    return blake3.blake3(json.dumps(ranges).encode()).hexdigest()[:32]


class BackupSession:
    """One restore point being written. Holds the backup lease from creation to commit.

    Resumable across processes: `Repository.begin_backup(point_id=...)` with the id of an
    unfinished session picks up its staging area; disks already done return at once and
    partly done disks continue from their journal.
    """

    def __init__(self, repo: "Repository", draft: PointDraft) -> None:
        self.repo = repo
        self.draft = draft
        self.point_id = draft.id
        self.dir: Path = repo.layout.staging / draft.id
        self._writers: dict[str, DiskWriter] = {}
        # A retry after a successful commit (the activity died before reporting) gets the
        # committed point back from every call instead of an error: writes are idempotent.
        self.committed: RestorePoint | None = None
        if repo.points.exists(draft.id):
            point = repo.points.read(draft.id)
            if (point.vm_id, point.type, point.base_point) != (draft.vm_id, draft.type, draft.base_point):
                raise PointExists(
                    f"restore point {draft.id} is already committed for another backup (VM {point.vm_id}, "
                    f"{point.type}, base {point.base_point})"
                )
            self.committed = point
        # Lease first, then the base: from here on no prune/delete may remove the base (§GC).
        self.lease = BackupLease(repo.layout, draft.id, draft.base_point)
        self.base: RestorePoint | None = None
        if self.committed is not None:
            self.lease.release()
            return
        try:
            self.base = repo.points.read(draft.base_point) if draft.base_point else None
            self._open_staging()
        except BaseException:
            self.lease.release()
            raise

    def _open_staging(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "session.json"
        if meta.exists():
            old = PointDraft.model_validate_json(meta.read_bytes())
            keys = ("vm_id", "type", "base_point", "plan")
            if any(getattr(old, k) != getattr(self.draft, k) for k in keys):
                raise RepositoryError(
                    f"staging for point {self.point_id} belongs to a different backup "
                    f"({', '.join(f'{k}={getattr(old, k)}' for k in keys)}); abort it or use another id"
                )
            self.draft = old  # keep the original created_at and labels
        else:
            atomic_write(meta, self.draft.model_dump_json().encode(), durable=False)

    def _journal_path(self, disk: str) -> Path:
        return self.dir / f"{disk}.journal"

    def _job_path(self, disk: str) -> Path:
        return self.dir / f"{disk}.job.json"

    def _done_path(self, disk: str) -> Path:
        return self.dir / f"{disk}.done.json"

    def _invalidate(self, disk: str) -> None:
        for p in (self._done_path(disk), self._journal_path(disk), self._job_path(disk)):
            p.unlink(missing_ok=True)

    def disk_writer(self, name: str, size: int, read_at: ReadAt, **kw: Any) -> DiskWriter:
        """See DiskWriter for keyword arguments (allocated=, changed=, source_id=, workers=)."""
        return DiskWriter(self, name, size, read_at, **kw)

    def backup_disk(self, name: str, size: int, read_at: ReadAt, *, on_progress: ProgressCallback | None = None,
                    **kw: Any) -> DiskManifest:
        return self.disk_writer(name, size, read_at, **kw).run(on_progress)

    def commit(self) -> RestorePoint:
        """Publish the point: all disks done -> (lease-lapse check) -> manifest by atomic
        rename after a syncfs -> drop staging and lease. Idempotent."""
        from datetime import UTC, datetime

        if self.committed is not None:
            return self.committed
        if self.repo.points.exists(self.point_id):
            point = self.repo.points.read(self.point_id)
            self._cleanup()
            return point
        disks: list[DiskManifest] = []
        missing = []
        for spec in self.draft.vm_config.disks:
            p = self._done_path(spec.name)
            if p.exists():
                disks.append(DiskManifest.model_validate_json(p.read_bytes()))
            else:
                missing.append(spec.name)
        if missing:
            raise RepositoryError(f"cannot commit point {self.point_id}: disks not backed up yet: {missing}")
        if self.lease.lapsed:
            self._recheck(disks)
        point = RestorePoint(**self.draft.model_dump(), disks=disks, committed_at=datetime.now(UTC))
        self.lease.refresh()
        self.repo.points.write(point)
        self._cleanup()
        return point

    def _recheck(self, disks: list[DiskManifest]) -> None:
        """Our lease lapsed (process frozen longer than half the expiry): a GC may have missed
        it. Re-touch every chunk; re-read a vanished one from the source (the snapshot holds
        every chunk, carried ones included), or send the disk back to be read again."""
        store, since = self.repo.store, self.lease.started
        for dm in disks:
            seen: set[bytes] = set()
            for i, e in enumerate(dm.chunks):
                if e is None or e in seen:
                    continue
                seen.add(e)
                if store.present(e, since):
                    continue
                w = self._writers.get(dm.name)
                if w is None:
                    self._invalidate(dm.name)
                    raise RepositoryError(
                        f"point {self.point_id}: chunk {e.hex()} of disk {dm.name} vanished while the backup "
                        "lease was lapsed; the disk will be read again on retry"
                    )
                data = w._assemble(i, [(i * w.cs, w.plan.chunk_len(i))]) if w.mode == "incremental" else w.read_chunk(i)
                if self.repo.codec.digest(data) != e:
                    raise SourceChanged(
                        f"disk {dm.name} chunk {i} no longer matches what was backed up: "
                        "the source is not a stable snapshot"
                    )
                store.put(e, data)
        self.lease.lapsed = False

    def _cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.lease.release()

    def abort(self) -> None:
        """Forget this attempt entirely (staging removed; written chunks become garbage)."""
        self._cleanup()

    def close(self) -> None:
        """Stop holding the lease but keep staging, so a later session can resume."""
        self.lease.release()

    def __enter__(self) -> "BackupSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.lease.release()
