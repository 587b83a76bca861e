"""Restore: write a point's disk to a target, to a new disk or in place over a disk whose
current content is known (then only chunks whose digest differs are written).

K worker threads fetch, decompress and verify chunks; the main thread writes them in disk
order, so `progress.chunk_index` always means "everything before this is written" and a
restore resumed at that index is exact (writes are idempotent: resuming earlier is safe).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pydantic import BaseModel

from drivers.repository.errors import PointNotFound, RepositoryError
from drivers.repository.manifest import ZERO, DiskManifest, RestorePoint

if TYPE_CHECKING:
    from drivers.repository import Repository

WriteAt = Callable[[int, bytes], None]
ZeroAt = Callable[[int, int], None]
ProgressCallback = Callable[["RestoreProgress"], None]
PROGRESS_BYTES = 256 << 20
WINDOW_BYTES = 16 << 20
BATCH_BYTES = 1 << 20  # chunks per hand-off between threads, as the writer's


class RestoreProgress(BaseModel):
    disk: str
    chunk_index: int  # chunks before this index are written: resume here
    chunk_count: int
    bytes_done: int
    bytes_total: int
    chunks_written: int = 0
    bytes_written: int = 0
    done: bool = False


class DiskRestorer:
    """Restores one disk of one point.

    target_is_zero: the target reads as zeros (new sparse disk): zero chunks are skipped.
    current: the manifest of the disk the target holds now (in-place restore): chunks whose
        entry is unchanged are skipped, changed zero chunks are zeroed.
    write_zeroes: optional `(offset, length)` callable to zero a range cheaply (discard,
        punch hole); by default zeros are written with write_at.
    write_at may be called only from the thread calling run(), in ascending offset order.
    """

    def __init__(
        self,
        repo: "Repository",
        point: RestorePoint,
        disk: str,
        write_at: WriteAt,
        *,
        target_is_zero: bool = False,
        current: DiskManifest | None = None,
        write_zeroes: ZeroAt | None = None,
        workers: int | None = None,
        window: int | None = None,
    ) -> None:
        try:
            self.dm = point.disk(disk)
        except KeyError as e:
            raise PointNotFound(str(e.args[0])) from None
        if current is not None and current.chunk_size != self.dm.chunk_size:
            current = None  # different chunking: nothing comparable, write everything
        self.repo = repo
        self.point = point
        self.write_at = write_at
        self.write_zeroes = write_zeroes
        self.target_is_zero = target_is_zero and current is None
        self.current = current
        from drivers.repository.writer import _default_workers

        self.workers = workers or _default_workers()
        # Decoded chunks waiting for the writer: enough for the workers to go on decoding
        # while the writer's thread is inside one batched write (BatchedWrites: 8 MiB);
        # with a few chunks only, decoding and writing took turns instead of overlapping.
        self.window = window or max(4, 2 * self.workers + 2, WINDOW_BYTES // self.dm.chunk_size)
        n = self.dm.chunk_count
        self._progress = RestoreProgress(disk=disk, chunk_index=0, chunk_count=n, bytes_done=0,
                                         bytes_total=self.dm.size)

    @property
    def progress(self) -> RestoreProgress:
        return self._progress.model_copy()

    def _same_as_current(self, i: int, entry: bytes) -> bool:
        cur = self.current
        if cur is None or i >= cur.chunk_count:
            return False
        # A last chunk of a different length covers different bytes: not comparable.
        if cur.chunk_extent(i)[1] != self.dm.chunk_extent(i)[1]:
            return False
        return cur.chunks.entry(i) == entry

    def _tasks(self, start: int) -> Iterator[tuple[int, bytes]]:
        for i in range(start, self.dm.chunk_count):
            e = self.dm.chunks.entry(i)
            if self._same_as_current(i, e) or (e == ZERO and self.target_is_zero):
                continue
            yield i, e

    def run(self, resume_from: int = 0, on_progress: ProgressCallback | None = None,
            progress_bytes: int = PROGRESS_BYTES) -> RestoreProgress:
        dm, store = self.dm, self.repo.store
        n, cs = dm.chunk_count, dm.chunk_size
        stop = threading.Event()
        errors: list[BaseException] = []
        slots = threading.Semaphore(self.window)
        # Chunks travel in batches of about BATCH_BYTES, as in the writer: a hand-off per
        # chunk woke a thread per chunk (~16% of a restore's samples were wake-ups).
        per_batch = max(1, min(BATCH_BYTES // cs, self.window // (self.workers + 1)))
        work: queue.Queue[list[tuple[int, bytes]] | None] = queue.Queue()
        results: queue.Queue[list[tuple[int, bytes | None]] | None] = queue.Queue()
        order: deque[int] = deque()
        feeder_done = threading.Event()

        def feeder() -> None:
            batch: list[tuple[int, bytes]] = []
            try:
                for i, e in self._tasks(resume_from):
                    if not slots.acquire(blocking=False):
                        if batch:  # never sit on a part batch while waiting for the writer
                            work.put(batch)
                            batch = []
                        while not slots.acquire(timeout=0.1):
                            if stop.is_set():
                                return
                    if stop.is_set():
                        return
                    order.append(i)
                    batch.append((i, e))
                    if len(batch) >= per_batch:
                        work.put(batch)
                        batch = []
                if batch:
                    work.put(batch)
                    batch = []
                feeder_done.set()
            except BaseException as ex:  # noqa: BLE001
                errors.append(ex)
                stop.set()
            finally:
                for _ in range(self.workers):
                    work.put(None)

        def worker() -> None:
            try:
                while (items := work.get()) is not None:
                    if stop.is_set():
                        continue
                    results.put([(i, None if e == ZERO else store.get(e)) for i, e in items])
            except BaseException as ex:  # noqa: BLE001
                errors.append(ex)
                stop.set()
            finally:
                results.put(None)

        threads = [threading.Thread(target=feeder, daemon=True)]
        threads += [threading.Thread(target=worker, daemon=True) for _ in range(self.workers)]
        for t in threads:
            t.start()

        done_idx, written, wbytes = resume_from, 0, 0
        last_report = resume_from
        ready: dict[int, bytes | None] = {}
        live = self.workers
        zeros = bytes(cs)

        def report(idx: int, final: bool = False) -> None:
            self._progress = RestoreProgress(
                disk=dm.name, chunk_index=idx, chunk_count=n, bytes_done=min(idx * cs, dm.size),
                bytes_total=dm.size, chunks_written=written, bytes_written=wbytes, done=final,
            )
            if on_progress:
                on_progress(self.progress)

        try:
            report(resume_from)
            while live and not errors:
                r = results.get()
                if r is None:
                    live -= 1
                    continue
                ready.update(r)
                while order and order[0] in ready:
                    i = order.popleft()
                    data = ready.pop(i)
                    off, ln = dm.chunk_extent(i)
                    if data is None:
                        if self.write_zeroes:
                            self.write_zeroes(off, ln)
                        else:
                            self.write_at(off, zeros if ln == cs else zeros[:ln])
                    else:
                        if len(data) != ln:
                            raise RepositoryError(f"chunk {i} of disk {dm.name} has {len(data)} bytes, expected {ln}")
                        self.write_at(off, data)
                    slots.release()
                    written += 1
                    wbytes += ln
                    done_idx = i + 1
                    if (done_idx - last_report) * cs >= progress_bytes:
                        last_report = done_idx
                        report(done_idx)
            if errors:
                raise errors[0]
        except BaseException:
            stop.set()
            for t in threads:
                t.join()
            raise
        for t in threads:
            t.join()
        report(n, final=True)
        return self.progress


class DiskImage:
    """Random-access reads of one disk of a point (file-level restore, tests, replication)."""

    def __init__(self, repo: "Repository", point: RestorePoint, disk: str, cache_chunks: int = 8) -> None:
        try:
            self.dm = point.disk(disk)
        except KeyError as e:
            raise PointNotFound(str(e.args[0])) from None
        self.repo = repo
        self.size = self.dm.size
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = cache_chunks

    def _chunk(self, i: int) -> bytes:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        e = self.dm.chunks.entry(i)
        data = bytes(self.dm.chunk_extent(i)[1]) if e == ZERO else self.repo.store.get(e)
        self._cache[i] = data
        if len(self._cache) > self._cache_chunks:
            self._cache.popitem(last=False)
        return data

    def read_at(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ValueError(f"read [{offset}, {offset + length}) outside disk of {self.size} bytes")
        cs = self.dm.chunk_size
        out = bytearray()
        pos, end = offset, offset + length
        while pos < end:
            i = pos // cs
            data = self._chunk(i)
            lo = pos - i * cs
            take = min(end - pos, len(data) - lo)
            out += data[lo : lo + take]
            pos += take
        return bytes(out)
