"""File-system durability and locking helpers shared by the drivers and the repository."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drivers.base import NotFound, ResourceLocked


def fsync_dir(path: Path) -> None:
    """A rename or create in `path` is durable only once the directory is fsynced."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_json(path: Path, obj: Any, durable: bool = True) -> None:
    """Write-to-temp, fsync, rename, fsync dir: readers see the old or the new file, never a
    torn one, and after a crash exactly one of them. `durable=False` skips the fsyncs: still
    never torn for readers, but a power cut may lose it (for a simulator's bookkeeping)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    data = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def acquire(fd: int, exclusive: bool, timeout_s: float, what: str) -> None:
    """flock with a deadline: a stuck holder becomes ResourceLocked, never a silent hang.
    Polls LOCK_NB with a short backoff (flock itself has no timeout)."""
    op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + timeout_s
    delay = 0.0005
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            raise ResourceLocked(f"{what} is locked by another task for more than {timeout_s:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.005)


@contextmanager
def locked(path: Path, exclusive: bool, timeout_s: float, what: str) -> Iterator[int]:
    """Hold flock on `path` (a fresh open file description, so threads of one process
    exclude each other too)."""
    try:
        fd = os.open(path, os.O_RDWR)  # no O_CREAT: a deleted VM must not get a new lock file
    except FileNotFoundError:
        raise NotFound(f"{what} does not exist") from None
    try:
        acquire(fd, exclusive, timeout_s, what)
        yield fd
    finally:
        os.close(fd)  # closing releases the flock
