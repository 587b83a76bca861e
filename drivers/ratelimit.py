"""IOPS caps of a backup/replication service (`backup_read_iops`, `restore_write_iops`):
a token bucket in front of a read or write callable. An I/O is counted per started 64 KiB
(the change-tracking block), so a cap means the same whatever size the caller's requests
are. Thread-safe (the repository's pipeline reads from its own thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class TokenBucket:
    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self.rate = per_second
        self.capacity = burst if burst is not None else max(1.0, per_second / 10)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int = 1) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


IO_UNIT = 64 * 1024


def limit_iops(fn: F, iops: int | None, size_arg: int = 1) -> F:
    """`fn` limited to `iops` 64 KiB I/Os per second (unlimited when None). `size_arg` is
    the position of the length (read_at(offset, length)) or data (write_at(offset, data))."""
    if not iops:
        return fn
    bucket = TokenBucket(iops)

    def limited(*args: object) -> object:
        size = args[size_arg]
        length = size if isinstance(size, int) else len(size)  # type: ignore[arg-type]
        bucket.take(max(1, -(-length // IO_UNIT)))
        return fn(*args)

    return limited  # type: ignore[return-value]
