"""Progress of long maintenance jobs (verify, GC) reported by elapsed time, not by size: a
job on a slow NFS mount or under an IOPS cap reports as often as a fast one, so a caller's
heartbeat timeout holds whatever the repository's size or speed."""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel

from drivers.ratelimit import IO_UNIT, TokenBucket

PROGRESS_INTERVAL = 5.0  # seconds between reports (a heartbeat timeout of 60 s has 12 chances)


class MaintenanceProgress(BaseModel):
    """What a job has done so far. Verify and GC are read-mostly and restart from scratch on
    a retry, so nothing here needs to be resumable; every count is of work finished."""

    op: str  # verify | gc
    phase: str  # verify: manifests, chunks; gc: mark, sweep
    done: int = 0  # items of this phase finished (manifests read, chunks checked or judged)
    total: int | None = None  # items of this phase, when known up front
    bytes_done: int = 0
    damaged: int = 0  # verify: damaged chunks found so far; gc: chunks swept so far


ProgressFn = Callable[[MaintenanceProgress], None]


class Ticker:
    """Calls `progress` at most every `interval` seconds (and when forced). Cheap enough to
    call once per item: it only reads the monotonic clock."""

    def __init__(self, progress: ProgressFn | None, interval: float = PROGRESS_INTERVAL) -> None:
        self.progress = progress
        self.interval = interval
        self._last = time.monotonic()

    def __call__(self, make: Callable[[], MaintenanceProgress], force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.progress(make())


class IOCap:
    """An optional IOPS cap on maintenance I/O (a verify sharing an NFS server with running
    backups), in the 64 KiB units of the services' caps (drivers/ratelimit.py)."""

    def __init__(self, iops: int | None) -> None:
        self._bucket = TokenBucket(iops) if iops else None

    def take(self, nbytes: int = 0) -> None:
        if self._bucket is not None:
            self._bucket.take(max(1, -(-nbytes // IO_UNIT)))
