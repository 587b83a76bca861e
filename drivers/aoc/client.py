"""An httpx client of the AOC REST API: token login (and again when a token expires),
filtered reads page by page, every change followed to its task's end within a timeout,
ResourceLocked and 5xx answers (and an AOC that does not answer) retried with backoff, and
every other refusal mapped onto the errors of drivers/base.py with the AOC's own message."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import httpx

from drivers.aoc.endpoint import Credentials
from drivers.base import (
    ANSWER_WITHIN,
    AlreadyExists,
    ClusterUnreachable,
    DriverError,
    GuestToolsMissing,
    InvalidState,
    NotFound,
    OperationTimeout,
    ResourceLocked,
    Unsupported,
)

PAGE = 100
RETRY_S = 120.0  # how long ResourceLocked, 5xx and an unreachable AOC are retried
TASK_TIMEOUT_S = 600.0
ERRORS: dict[str, type[DriverError]] = {
    "NotFound": NotFound, "VmNameDuplicate": AlreadyExists, "SnapshotNameDuplicate": AlreadyExists,
    "VmNotStopped": InvalidState, "SnapshotOrder": InvalidState, "VolumeShrinkUnsupported": Unsupported,
    "VmToolsNotRunning": GuestToolsMissing, "VmShutdownTimeout": OperationTimeout, "ResourceLocked": ResourceLocked,
}


class AocClient:
    def __init__(self, base_url: str, creds: Credentials, verify: ssl.SSLContext | str | bool = True,
                 retry_s: float = RETRY_S, timeout_s: float = 60.0, trusted: str = "the system's CAs") -> None:
        self.base_url, self.creds, self.retry_s, self.trusted = base_url, creds, retry_s, trusted
        self.http = httpx.Client(base_url=base_url, verify=verify, timeout=timeout_s)
        self._token: str | None = None
        self._lock = threading.Lock()

    def _error(self, status: int, body: Any, what: str) -> DriverError:
        code = body.get("code") if isinstance(body, dict) else None
        msg = body.get("message") if isinstance(body, dict) else str(body)[:500]
        cls = ERRORS.get(code or "", NotFound if status == 404 else DriverError)
        return cls(f"AOC {self.base_url}: {what}: {msg}" + (f" ({code})" if code else ""))

    def _login(self) -> str:
        body = {"username": self.creds.username, "password": self.creds.password, "source": self.creds.source}
        r = self.http.post("/v2/api/login", json=body)
        if r.status_code != 200:
            raise self._error(r.status_code, _json(r), f"login as {self.creds.username!r} failed")
        token = str(r.json()["data"]["token"])
        self._token = token
        return token

    def post(self, path: str, body: Any) -> Any:
        """One call, retried while the AOC is busy, failing or unreachable (up to retry_s)."""
        start = time.monotonic()
        deadline = start + self.retry_s
        patience = ANSWER_WITHIN.get()
        unanswered = deadline if patience is None else min(deadline, start + patience)
        delay, relogged = 0.02, False
        while True:
            try:
                with self._lock:
                    token = self._token or self._login()
                r = self.http.post(path, json=body, headers={"Authorization": token})
            except httpx.TransportError as e:
                self._refused_tls(e)
                if time.monotonic() > unanswered:
                    raise ClusterUnreachable(f"AOC {self.base_url} does not answer {path}: {e}") from None
            else:
                data = _json(r)
                if r.status_code == 200:
                    return data
                code = data.get("code") if isinstance(data, dict) else None
                if r.status_code == 401 and not relogged:
                    with self._lock:
                        if self._token == token:
                            self._token = None  # expired: log in again, once per call
                    relogged = True
                    continue
                retryable = r.status_code >= 500 or code == "ResourceLocked"
                if not retryable or time.monotonic() > deadline:
                    raise self._error(r.status_code, data, path.rsplit("/", 1)[-1])
            time.sleep(delay)
            delay = min(delay * 2, 0.25)  # a task holding the resource ends soon as often as not

    def _refused_tls(self, e: httpx.TransportError) -> None:
        """A certificate abdr does not trust is an answer, not an outage: say so at once."""
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise DriverError(f"AOC {self.base_url}: its TLS certificate is not trusted: checked against "
                              f"{self.trusted}: {cause.verify_message or cause}") from None

    def read(self, op: str, where: dict[str, Any], order_by: str | None = None) -> list[dict[str, Any]]:
        """Every row `where` matches, PAGE at a time."""
        out: list[dict[str, Any]] = []
        while True:
            body: dict[str, Any] = {"where": where, "first": PAGE, "skip": len(out)}
            if order_by:
                body["orderBy"] = order_by
            page = self.post(f"/v2/api/{op}", body)
            out.extend(page)
            if len(page) < PAGE:
                return out

    def change(self, op: str, body: Any, timeout_s: float = TASK_TIMEOUT_S) -> list[dict[str, Any]]:
        """Ask for a change and follow its tasks to their end; the returned `data` is only
        what the AOC said when asked (re-read the resource: only its id is trustworthy)."""
        results = self.post(f"/v2/api/{op}", body)
        for r in results:
            if r.get("task_id"):
                self.wait_task(op, r["task_id"], timeout_s)
        return [r.get("data") or {} for r in results]

    def wait_task(self, op: str, task_id: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while True:
            tasks = self.post("/v2/api/get-tasks", {"where": {"id_in": [task_id]}})
            if not tasks:
                raise DriverError(f"AOC {self.base_url}: task {task_id} of {op} vanished")
            t = tasks[0]
            if t["status"] == "SUCCESSED":
                return
            if t["status"] == "FAILED":
                cls = ERRORS.get(t.get("error_code") or "", DriverError)
                raise cls(f"AOC {self.base_url}: {op} failed (task {task_id}): {t.get('error_message')} "
                          f"({t.get('error_code')})")
            if time.monotonic() > deadline:
                raise OperationTimeout(f"AOC {self.base_url}: {op} did not end within {timeout_s:g}s (task {task_id} "
                                       f"is {t['status']} at {float(t.get('progress') or 0):.0%})")
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 0.5)

    def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        """One GET with the token (logged in again once if it expired); the caller judges the answer."""
        for _ in range(2):
            with self._lock:
                token = self._token or self._login()
            try:
                r = self.http.get(path, headers={**headers, "Authorization": token})
            except httpx.TransportError as e:
                self._refused_tls(e)
                raise
            if r.status_code != 401:
                return r
            with self._lock:
                if self._token == token:
                    self._token = None
        return r

    def storage(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self.post(f"/v2/storage/{op}", body)
        return out


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {"message": r.text[:500]}
