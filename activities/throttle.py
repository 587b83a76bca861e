"""IOPS caps of a backup/replication service (`backup_read_iops`, `restore_write_iops`):
a token bucket in front of a read or write callable. Thread-safe (the repository's
pipeline reads from its own thread)."""

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

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait:
            time.sleep(wait)


def limit_iops(fn: F, iops: int | None) -> F:
    """`fn` limited to `iops` calls per second (unlimited when None)."""
    if not iops:
        return fn
    bucket = TokenBucket(iops)

    def limited(*args: object, **kwargs: object) -> object:
        bucket.take()
        return fn(*args, **kwargs)

    return limited  # type: ignore[return-value]
