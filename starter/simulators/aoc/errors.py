"""The simulator's errors, answered as the AOC answers them: HTTP 400/401/404/500 with
`{status, message, path, code}`."""

from __future__ import annotations


class SimError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found(what: str) -> SimError:
    return SimError(404, "NotFound", f"{what} not found")


def bad(code: str, message: str) -> SimError:
    return SimError(400, code, message)


def locked(resource: str, task_id: str) -> SimError:
    return SimError(400, "ResourceLocked", f"resource {resource} is locked by task {task_id}")
