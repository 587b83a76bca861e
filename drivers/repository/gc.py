"""Garbage collection: delete chunks no manifest references, without ever deleting one a
running backup is about to reference. The protocol and its safety argument are in
docs/repository-format.md §Garbage collection; the steps below are numbered as there.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from drivers.repository.chunks import ChunkStore
from drivers.repository.errors import CorruptManifest, PointNotFound, RepositoryError
from drivers.repository.fsutil import atomic_write, server_now
from drivers.repository.journal import read_entries
from drivers.repository.locks import LEASE_EXPIRY, MaintenanceLock, live_leases
from drivers.repository.manifest import DIGEST_LEN, ZERO
from drivers.repository.progress import PROGRESS_INTERVAL, IOCap, MaintenanceProgress, ProgressFn, Ticker
from drivers.repository.verify import BAD_SUFFIX

if TYPE_CHECKING:
    from drivers.repository import Repository

GC_MARGIN = 3600.0  # seconds subtracted from the cutoff (see spec: lease visibility on NFS)
STAGING_EXPIRY = 7 * 86400.0  # abandoned staging areas are dropped after a week
TRASH_PREFIX = ".trash."


class GCReport(BaseModel):
    cutoff: float
    live_leases: int
    points: int
    marked_chunks: int
    kept_young: int = 0  # unreferenced but newer than the cutoff
    swept_chunks: int = 0
    swept_bytes: int = 0
    rescued: int = 0  # touched by a backup between selection and removal: put back
    tmp_removed: int = 0
    bad_removed: int = 0  # damaged copies verify moved aside (<digest>.bad), past the cutoff
    trash_recovered: int = 0
    staging_removed: list[str] = []
    dry_run: bool = False
    seconds: float = 0.0


@dataclass
class GCHooks:
    """Test seams at the two moments a concurrent backup could interleave."""

    before_condemn: Callable[[Path], None] | None = None  # chunk selected, not yet moved
    after_condemn: Callable[[Path], None] | None = None  # chunk moved to trash, not yet checked


def _mark(repo: "Repository", tick: Ticker, cap: IOCap) -> tuple[set[bytes], int]:
    marked: set[bytes] = set()
    n = 0
    ids = repo.points.ids()
    for i, pid in enumerate(ids):
        tick(lambda: MaintenanceProgress(op="gc", phase="mark", done=i, total=len(ids)))
        cap.take()
        try:
            point = repo.points.read(pid)
        except PointNotFound:
            continue
        except CorruptManifest as e:
            # We cannot know what it references: deleting anything could destroy it.
            raise RepositoryError(f"GC refuses to run: {e}; repair or delete that manifest first") from None
        marked |= point.digests()
        n += 1
    # Chunks recorded by unfinished backups (resumable later) stay too.
    for journal in repo.layout.staging.glob("*/*.journal"):
        p = read_entries(journal)
        marked |= {p[o : o + DIGEST_LEN] for o in range(0, len(p), DIGEST_LEN)}
    marked.discard(ZERO)
    return marked, n


def _recover_trash(store: ChunkStore) -> int:
    """Put back chunks a crashed GC moved to trash but had not yet judged (step 1)."""
    n = 0
    for e in store.iter_files():
        if e.name.startswith(TRASH_PREFIX):
            name = e.name[len(TRASH_PREFIX) :].split(".")[0]
            try:
                os.link(e.path, os.path.join(os.path.dirname(e.path), name))
                n += 1
            except FileExistsError:
                pass
            os.unlink(e.path)
    return n


def _unlink_older(entry: os.DirEntry[str], cutoff: float, dry_run: bool) -> int:
    """Remove a file last written before `cutoff`; 1 if removed (gone already counts 0)."""
    try:
        if entry.stat().st_mtime < cutoff and not dry_run:
            os.unlink(entry.path)
            return 1
    except FileNotFoundError:
        pass
    return 0


def collect_garbage(
    repo: "Repository",
    *,
    margin: float = GC_MARGIN,
    lease_expiry: float = LEASE_EXPIRY,
    staging_expiry: float = STAGING_EXPIRY,
    dry_run: bool = False,
    hooks: GCHooks | None = None,
    progress: ProgressFn | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
    iops: int | None = None,
) -> GCReport:
    """`progress` is called every `progress_interval` seconds of elapsed time; `iops` caps
    GC's file operations (one manifest read or one chunk judged is one I/O)."""
    t0 = time.monotonic()
    tick, cap = Ticker(progress, progress_interval), IOCap(iops)
    layout, store = repo.layout, repo.store
    hooks = hooks or GCHooks()
    with MaintenanceLock(layout, "gc"):
        recovered = 0 if dry_run else _recover_trash(store)  # 1
        t_gc = server_now(layout.gc_runs)  # 2: GC start, by the file server's clock
        leases = live_leases(layout, expiry=lease_expiry, now=t_gc)  # 3: read after t_gc
        cutoff = min([t_gc] + [lease.started for lease in leases]) - margin
        marked, npoints = _mark(repo, tick, cap)  # 4
        report = GCReport(cutoff=cutoff, live_leases=len(leases), points=npoints, marked_chunks=len(marked),
                          trash_recovered=recovered, dry_run=dry_run)
        judged = 0
        for e in store.iter_files():  # 5: sweep
            judged += 1
            tick(lambda: MaintenanceProgress(op="gc", phase="sweep", done=judged, bytes_done=report.swept_bytes,
                                             damaged=report.swept_chunks))
            cap.take()
            name = e.name
            if name.endswith(BAD_SUFFIX):  # a damaged copy verify moved aside: only evidence
                report.bad_removed += _unlink_older(e, cutoff, dry_run)
                continue
            if name.startswith("."):
                if not name.startswith(TRASH_PREFIX) and name.endswith(".tmp"):
                    report.tmp_removed += _unlink_older(e, cutoff, dry_run)
                continue
            d = store.digest_of_name(name)
            if d is None or d in marked:
                continue
            try:
                st = e.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime >= cutoff:
                report.kept_young += 1
                continue
            if dry_run:
                report.swept_chunks += 1
                report.swept_bytes += st.st_size
                continue
            if hooks.before_condemn:
                hooks.before_condemn(Path(e.path))
            # Move aside, then look again: a backup that refreshed the chunk before the move
            # shows in the mtime (put it back); one that looks after the move finds it absent
            # and writes it anew. Never unlink a name a backup may have just confirmed.
            trash = os.path.join(os.path.dirname(e.path), f"{TRASH_PREFIX}{name}.{os.getpid()}")
            try:
                os.rename(e.path, trash)
            except FileNotFoundError:
                continue
            if hooks.after_condemn:
                hooks.after_condemn(Path(trash))
            st2 = os.stat(trash)
            if st2.st_mtime >= cutoff:
                try:
                    os.link(trash, e.path)
                except FileExistsError:
                    pass  # rewritten meanwhile
                os.unlink(trash)
                report.rescued += 1
                continue
            os.unlink(trash)
            report.swept_chunks += 1
            report.swept_bytes += st2.st_size
        if not dry_run:  # 6: abandoned staging areas (marked above, so safe this run)
            report.staging_removed = _drop_stale_staging(repo, {lease.point_id for lease in leases},
                                                         t_gc - staging_expiry)
        report.seconds = time.monotonic() - t0
        tick(lambda: MaintenanceProgress(op="gc", phase="done", done=judged, bytes_done=report.swept_bytes,
                                         damaged=report.swept_chunks), force=True)
        atomic_write(layout.gc_runs / "last.json", report.model_dump_json(indent=1).encode(), durable=False)
        return report


def _drop_stale_staging(repo: "Repository", leased: set[str], older_than: float) -> list[str]:
    out = []
    for d in repo.layout.staging.iterdir():
        if not d.is_dir() or d.name in leased:
            continue
        newest = max((f.stat().st_mtime for f in d.iterdir()), default=d.stat().st_mtime)
        if newest < older_than:
            shutil.rmtree(d, ignore_errors=True)
            out.append(d.name)
    return out

