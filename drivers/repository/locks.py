"""The maintenance lock (GC, prune: one at a time) and backup leases (GC must spare what a
running backup may still reference).

Both are plain files whose mtime is refreshed by a background thread while the holder runs;
a file not refreshed for `expiry` seconds (by the file server's clock) is stale. A holder on
this host whose pid is gone is stale at once, so a SIGKILLed job does not block for minutes.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.repository.config import Layout, host_id
from drivers.repository.errors import RepositoryLocked
from drivers.repository.fsutil import server_now, tmp_name

LOCK_EXPIRY = 300.0  # a maintenance lock not refreshed for 5 minutes is stale
LEASE_EXPIRY = 900.0  # a backup lease not refreshed for 15 minutes is stale


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder_dead(info: dict[str, Any]) -> bool:
    return info.get("host") == host_id() and isinstance(info.get("pid"), int) and not _pid_alive(info["pid"])


class _Refresher:
    """Bumps a file's mtime every `interval` seconds until stopped. `lapsed` turns true if a
    refresh came later than `max_gap` (process frozen, NFS hung) or the file vanished: the
    holder may then have been considered dead by others."""

    def __init__(self, path: Path, interval: float, max_gap: float) -> None:
        self._path = path
        self._interval = interval
        self._max_gap = max_gap
        self.lapsed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"refresh {path.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._interval):
            try:
                os.utime(self._path)
            except FileNotFoundError:
                self.lapsed = True
                return
            now = time.monotonic()
            if now - last > self._max_gap:
                self.lapsed = True
            last = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class MaintenanceLock:
    """Exclusive lock for maintenance jobs. Use as a context manager:

        with MaintenanceLock(layout, "gc"):
            ...
    """

    def __init__(self, layout: Layout, op: str, *, expiry: float = LOCK_EXPIRY) -> None:
        self.layout = layout
        self.op = op
        self.expiry = expiry
        self.path = layout.locks / "maintenance.json"
        self.id = secrets.token_hex(8)
        self._refresher: _Refresher | None = None

    def holder(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
            info["age"] = server_now(self.layout.locks) - self.path.stat().st_mtime
            return info
        except FileNotFoundError:
            return None
        except ValueError:  # half-written by a crashed holder is impossible (link), but be safe
            return {"op": "?", "host": "?", "pid": "?", "id": "?", "age": 0.0}

    def acquire(self) -> "MaintenanceLock":
        info = {"op": self.op, "host": host_id(), "pid": os.getpid(), "id": self.id,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        tmp = tmp_name(self.path)
        tmp.write_text(json.dumps(info))
        try:
            for _ in range(3):
                try:
                    os.link(tmp, self.path)  # atomic create-if-absent, also over NFS
                    break
                except FileExistsError:
                    self._break_if_stale()
            else:
                raise self._locked_error()
        finally:
            tmp.unlink(missing_ok=True)
        self._refresher = _Refresher(self.path, self.expiry / 10, self.expiry / 2)
        return self

    def _locked_error(self) -> RepositoryLocked:
        h = self.holder() or {}
        return RepositoryLocked(
            f"repository {self.layout.root} is locked by {h.get('op')} (host {h.get('host')}, pid "
            f"{h.get('pid')}, since {h.get('started')}, lock {h.get('id')}); cannot run {self.op} "
            f"now. Retry when it finishes; a holder that died is ignored after {self.expiry:.0f}s "
            "without refresh (immediately if it ran on this host)",
            holder=h,
        )

    def _break_if_stale(self) -> None:
        h = self.holder()
        if h is None:
            return
        if not (_holder_dead(h) or h.get("age", 0.0) > self.expiry):
            raise self._locked_error()
        # Move the stale lock aside; if a racing breaker already replaced it with a live lock,
        # we moved *that* one: put it back and report it.
        aside = self.path.with_name(f".stale.{secrets.token_hex(4)}.tmp")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text())
        except (OSError, ValueError):
            moved = {}
        if moved.get("id") != h.get("id"):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            raise self._locked_error()
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        if self._refresher:
            self._refresher.stop()
            self._refresher = None
        try:
            if json.loads(self.path.read_text()).get("id") == self.id:
                self.path.unlink()
        except (FileNotFoundError, ValueError):
            pass

    def __enter__(self) -> "MaintenanceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass(frozen=True)
class LeaseInfo:
    path: Path
    point_id: str
    base_point: str | None
    started: float  # file-server time the lease was created
    refreshed: float  # its mtime
    host: str
    pid: int


class BackupLease:
    """Held by a running backup from before its first chunk lookup until after its manifest
    is committed. `started` is taken from the lease file's own mtime (server clock)."""

    def __init__(self, layout: Layout, point_id: str, base_point: str | None, *, expiry: float = LEASE_EXPIRY) -> None:
        self.layout = layout
        self.path = layout.leases / f"{point_id}.{secrets.token_hex(4)}.json"
        # Written aside and linked into place, so a reader never sees a lease without its base.
        tmp = tmp_name(self.path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self.started = os.fstat(fd).st_mtime
            os.write(fd, json.dumps({"point_id": point_id, "base_point": base_point, "started": self.started,
                                     "host": host_id(), "pid": os.getpid()}).encode())
        finally:
            os.close(fd)
        try:
            os.link(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)
        self._refresher: _Refresher | None = _Refresher(self.path, expiry / 10, expiry / 2)
        self._lapsed = False

    @property
    def lapsed(self) -> bool:
        return self._lapsed or bool(self._refresher and self._refresher.lapsed)

    @lapsed.setter
    def lapsed(self, value: bool) -> None:
        self._lapsed = value
        if self._refresher:
            self._refresher.lapsed = value

    def refresh(self) -> None:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            self.lapsed = True

    def release(self) -> None:
        if self._refresher:
            self._refresher.stop()
            self._refresher = None
        self.path.unlink(missing_ok=True)


def live_leases(layout: Layout, *, expiry: float = LEASE_EXPIRY, now: float | None = None) -> list[LeaseInfo]:
    """Leases refreshed within `expiry` whose holder is not known dead."""
    now = server_now(layout.leases) if now is None else now
    out: list[LeaseInfo] = []
    for e in os.scandir(layout.leases):
        if e.name.startswith(".") or not e.name.endswith(".json"):
            continue
        try:
            st = e.stat()
            info = json.loads(Path(e.path).read_text())
        except FileNotFoundError:
            continue  # released meanwhile
        except ValueError:  # being written right now: it started about when it was created
            info = {"point_id": e.name.split(".")[0], "started": st.st_mtime}
        if now - st.st_mtime > expiry or _holder_dead(info):
            continue
        out.append(LeaseInfo(Path(e.path), info["point_id"], info.get("base_point"), float(info["started"]),
                             st.st_mtime, info.get("host", "?"), int(info.get("pid", -1))))
    return out
