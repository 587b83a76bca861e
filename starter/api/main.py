"""abdr's REST API for services in other languages: the same operations as the Python
client (it is a thin layer over `AbdrClient`), an OpenAPI document at /openapi.json, and
bearer-token authentication (`ABDR_API_TOKEN`). Long operations return 202 with their
workflow id and Web UI link; `GET /v1/jobs/{workflow_id}` follows them.

Every error has one shape (`ErrorBody`), every status a route may answer is declared in the
OpenAPI document, and request bodies are bounded (ABDR_API_MAX_REQUEST_BYTES, 413 above).
/openapi.json, /docs and /redoc (with their scripts, served locally) need no token: they
describe the API (as its source does) and hold no data; every /v1 route needs it.

    abdr api --port 8080
"""


from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError

from drivers.secrets import check_secret
from starter.api.errors import BodyLimit, error_body, kind_of_status, status_of
from starter.api.routers import ROUTERS
from starter.client import AbdrClient, AbdrError
from starter.runtime.settings import Settings


def _error(status: int, message: str, kind: str | None = None,
           details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, kind or kind_of_status(status), details), status_code=status)


def make_api(settings: Settings, token: str, connect: Callable[[], Awaitable[AbdrClient]] | None = None) -> FastAPI:
    check_secret(token, "the REST API's token", "ABDR_API_TOKEN")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.client = await (connect() if connect else AbdrClient.connect(settings))
        yield

    # One schema per model, requests and responses alike (a spec is both): the document names
    # the models as their Python classes are named. FastAPIOffline: /docs (Swagger UI) and
    # /redoc load their scripts from the API itself, not from a CDN a machine may not reach.
    app = FastAPIOffline(title="abdr", version="1", lifespan=lifespan, separate_input_output_schemas=False,
                  description="Disaster recovery for virtual machines: backup plans, restore, replication, "
                              "failover, failback. Every /v1 call needs `Authorization: Bearer <token>`; "
                              "every error answers `{\"error\": message, \"kind\": kind, \"details\": ...}`.")
    app.state.token = token  # read by the routers' dependency (dependencies.client)
    app.add_middleware(BodyLimit, limit=settings.api_max_request_bytes)

    @app.exception_handler(AbdrError)
    async def _abdr_error(_: Request, e: AbdrError) -> JSONResponse:
        return _error(status_of(e), str(e), e.meaning.value)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        response = _error(e.status_code, str(e.detail))
        response.headers.update(e.headers or {})
        if e.status_code == 405:  # Allow: every method of the path (one route per method, each knows its own)
            allowed = {m for router in ROUTERS for r in router.routes
                       if isinstance(r, APIRoute) and r.path_regex.match(request.url.path) for m in r.methods or ()}
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
                   for err in e.errors()]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return _error(422, f"invalid request: {summary}", "invalid", details)

    @app.exception_handler(RPCError)
    async def _temporal_error(_: Request, e: RPCError) -> JSONResponse:
        # Temporal went away after the API connected (a client call that reached no worker).
        return _error(503, f"Temporal did not answer: {e.message} (is it running? `abdr status`)", "unavailable")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, e: Exception) -> JSONResponse:
        # A bug: still the one shape (starlette would answer plain text); the server logs the
        # traceback, as it re-raises the error after this answer.
        return _error(500, f"unexpected {type(e).__name__}: {e} (a bug in abdr; the API's log has the traceback)",
                      "failed")

    for router in ROUTERS:
        app.include_router(router)
    return app
