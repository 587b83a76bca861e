"""The REST API's one error shape, the statuses every route may answer (declared in the
OpenAPI document), and the request-size limit that keeps the process's memory bounded."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from starter.client.errors import AbdrError, Busy, Conflict, Damaged, Invalid, NotFound, Unavailable

# What an error says to the caller: the client's kinds (models/errors.py's Meaning, as the
# CLI's exit codes read them) and the API's own refusal of a missing or wrong token.
ErrorKind = Literal["invalid", "not_found", "conflict", "busy", "unavailable", "damaged", "failed", "unauthorized"]


class ErrorBody(BaseModel):
    """Every error the API answers: a message naming what and why, its kind (what to do about
    it: `busy` may work later, `conflict` will not), and for a request that failed
    validation, where (one entry per problem)."""

    error: str
    kind: ErrorKind = Field(description="invalid | not_found | conflict | busy | unavailable | damaged | failed "
                                        "(the kinds of the CLI's exit codes) | unauthorized.")
    details: list[dict[str, Any]] | None = Field(default=None, description="422: the validation problems.")


_WHY = {
    400: "The request contradicts the catalog or the plan, or the operation failed (the message says how).",
    401: "No valid bearer token.",
    404: "A plan, point, VM or job named by the request does not exist.",
    409: "It exists already or is not in the state the operation needs, or an operation on it is running.",
    413: "The request body is larger than the limit (ABDR_API_MAX_REQUEST_BYTES).",
    422: "The request does not validate: a rule of the schema or one between fields.",
    500: "Stored data is damaged (a repository's chunk or manifest): `abdr repository verify` names it; "
         "or an unexpected error (a bug: the API's log has its traceback).",
    503: "No abdr worker (or the site the operation needs), or Temporal itself, answered in time.",
}
# Any route may answer each of these: the token is checked, bodies are bounded and validated,
# and every route asks the workers, whose refusals map to a status by their class (`status_of`).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why} for code, why in _WHY.items()}
# The client's exception classes (their ApplicationError type's meaning) as HTTP statuses.
STATUS: dict[type[AbdrError], int] = {AbdrError: 400, Invalid: 400, NotFound: 404, Conflict: 409, Busy: 409,
                                      Damaged: 500, Unavailable: 503}
# The kind of an error the framework answers by status (a missing route, a wrong method, a body
# too large, a request that does not validate), for statuses no AbdrError stands behind.
_KIND_OF_STATUS: dict[int, ErrorKind] = {401: "unauthorized", 404: "not_found", 409: "conflict", 503: "unavailable",
                                         500: "failed"}


def status_of(e: AbdrError) -> int:
    """The HTTP status of an AbdrError, by its class (the nearest one the table names)."""
    return next(STATUS[c] for c in type(e).__mro__ if c in STATUS)


def kind_of_status(status: int) -> ErrorKind:
    """The kind of an error known only by its status: any other 4xx is bad input."""
    return _KIND_OF_STATUS.get(status, "invalid" if status < 500 else "failed")


def error_body(message: str, kind: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The one error shape (`ErrorBody`, which checks that `kind` is one of its kinds), for
    every error handler and the body limit alike."""
    return ErrorBody.model_validate({"error": message, "kind": kind, "details": details}).model_dump(mode="json")


class BodyLimit:
    """ASGI middleware: a body above `limit` bytes is answered 413 before the app runs and
    is never held (a declared Content-Length is refused unread; a chunked body is counted as
    it arrives). An oversized body is read and dropped before the 413, so the client gets the
    answer instead of a reset, up to `drain` bytes; beyond that the connection is closed."""

    def __init__(self, app: ASGIApp, limit: int, drain: int = 256 << 20) -> None:
        self.app, self.limit, self.drain = app, limit, drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(receive, send, 0)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                await self._refuse(receive, send, size if more else -1)
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # waits for the disconnect, as the server's own receive does
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, receive: Receive, send: Send, read: int) -> None:
        # Drop the rest first (nothing is kept): once the response is sent the server stops
        # delivering the body and resets the connection, and the client would see no 413.
        while 0 <= read < self.drain:
            message = await receive()
            if message["type"] != "http.request":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.dumps(error_body(f"the request body is larger than {self.limit} bytes", "invalid")).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
