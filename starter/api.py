"""abdr's REST API for services in other languages: the same operations as the Python
client (it is a thin layer over `AbdrClient`), an OpenAPI document at /openapi.json, and
bearer-token authentication (`ABDR_API_TOKEN`). Long operations return 202 with their
workflow id and Web UI link; `GET /v1/jobs/{workflow_id}` follows them.

Every error has one shape (`ErrorBody`), every status a route may answer is declared in the
OpenAPI document, and request bodies are bounded (ABDR_API_MAX_REQUEST_BYTES, 413 above).
/openapi.json and /docs need no token: they describe the API (as its source does) and hold
no data; every /v1 route needs it.

    abdr api --port 8080
"""


import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowHandle

from drivers.secrets import check_secret
from models.inventory import NAME_PATTERN
from models.plans import BackupPlanSpec
from models.replication import ReplicationPlanSpec
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    FailoverTestRequest,
    PermanentFailoverRequest,
    RestoreRequest,
    UndoFailoverRequest,
)
from starter import api_examples as ex
from starter.api_errors import ERROR_RESPONSES, BodyLimit, status_of
from starter.client import AbdrClient, AbdrError
from starter.runtime.settings import Settings

bearer = HTTPBearer(auto_error=False)
PlanName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description="A plan's name.")]
PlanQuery = Annotated[str | None, Query(pattern=NAME_PATTERN, max_length=63, description="Only this plan's.")]
VMQuery = Annotated[str | None, Query(pattern=NAME_PATTERN.replace("$", "") + "/" + NAME_PATTERN[1:],
                                      description="Only this VM's, written cluster/vm.")]


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "details": details}, status_code=status)


def make_api(settings: Settings, token: str, connect: Callable[[], Awaitable[AbdrClient]] | None = None) -> FastAPI:
    check_secret(token, "the REST API's token", "ABDR_API_TOKEN")
    state: dict[str, AbdrClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["client"] = await (connect() if connect else AbdrClient.connect(settings))
        yield

    app = FastAPI(title="abdr", version="1", lifespan=lifespan,
                  description="Disaster recovery for virtual machines: backup plans, restore, replication, "
                              "failover, failback. Every /v1 call needs `Authorization: Bearer <token>`; "
                              "every error answers `{\"error\": message, \"details\": ...}`.")
    app.add_middleware(BodyLimit, limit=settings.api_max_request_bytes)

    def client(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> AbdrClient:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return state["client"]

    C = Annotated[AbdrClient, Depends(client)]
    v1 = APIRouter(responses=ERROR_RESPONSES)

    @app.exception_handler(AbdrError)
    async def _abdr_error(_: Request, e: AbdrError) -> JSONResponse:
        return _error(status_of(str(e)), str(e))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        response = _error(e.status_code, str(e.detail))
        response.headers.update(e.headers or {})
        if e.status_code == 405:  # Allow: every method of the path (one route per method, each knows its own)
            allowed = {m for r in v1.routes if getattr(r, "path_regex", None) and r.path_regex.match(request.url.path)
                       for m in getattr(r, "methods", ())}
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
                   for err in e.errors()]
        summary = "; ".join(f"{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in details)
        return _error(422, f"invalid request: {summary}", details)

    def started(c: AbdrClient, h: WorkflowHandle) -> dict[str, Any]:
        return {"workflow_id": h.id, "run_id": h.result_run_id, "ui": c.ui_link(h.id, h.result_run_id)}

    # -- backup ---------------------------------------------------------------------------
    @v1.get("/v1/backup-plans")
    async def list_backup_plans(c: C) -> list[dict]:
        return await c.list_backup_plans()

    @v1.post("/v1/backup-plans", status_code=201)
    async def create_backup_plan(spec: Annotated[BackupPlanSpec, Body(openapi_examples=ex.BACKUP_PLAN)], c: C) -> dict:
        return await c.create_backup_plan(spec)

    @v1.get("/v1/backup-plans/{name}")
    async def get_backup_plan(name: PlanName, c: C) -> dict:
        return await c.get_backup_plan(name)

    @v1.put("/v1/backup-plans/{name}")
    async def update_backup_plan(name: PlanName, spec: Annotated[BackupPlanSpec, Body(openapi_examples=ex.BACKUP_PLAN)],
                                 c: C) -> dict:
        if spec.name != name:
            raise HTTPException(400, f"the body names plan {spec.name!r}, the path {name!r}")
        return await c.update_backup_plan(spec)

    @v1.delete("/v1/backup-plans/{name}")
    async def delete_backup_plan(name: PlanName, c: C, delete_points: bool = False) -> dict:
        return await c.delete_backup_plan(name, delete_points)

    @v1.post("/v1/backup-plans/{name}/pause")
    async def pause_backup_plan(name: PlanName, c: C) -> dict:
        return await c.set_backup_plan_paused(name, True)

    @v1.post("/v1/backup-plans/{name}/resume")
    async def resume_backup_plan(name: PlanName, c: C) -> dict:
        return await c.set_backup_plan_paused(name, False)

    @v1.post("/v1/backup-plans/{name}/run", status_code=202)
    async def run_backup_plan(name: PlanName, c: C, full: bool = False) -> dict:
        return started(c, await c.run_backup_plan(name, full=full))

    @v1.get("/v1/restore-points")
    async def list_restore_points(c: C, plan: PlanQuery = None, vm: VMQuery = None) -> list[dict]:
        return await c.list_restore_points(plan=plan, vm=vm)

    @v1.post("/v1/restores", status_code=202)
    async def restore(req: Annotated[RestoreRequest, Body(openapi_examples=ex.RESTORE)], c: C) -> dict:
        return started(c, await c.restore(req))

    # -- replication and DR -------------------------------------------------------------------
    @v1.get("/v1/replication-plans")
    async def list_replication_plans(c: C) -> list[dict]:
        return await c.list_replication_plans()

    @v1.post("/v1/replication-plans", status_code=201)
    async def create_replication_plan(
            spec: Annotated[ReplicationPlanSpec, Body(openapi_examples=ex.REPLICATION_PLAN)], c: C) -> dict:
        return await c.create_replication_plan(spec)

    @v1.post("/v1/replication-plans/{name}/run", status_code=202)
    async def run_replication_plan(name: PlanName, c: C) -> dict:
        return started(c, await c.run_replication_plan(name))

    @v1.get("/v1/replicas")
    async def list_replicas(c: C, plan: PlanQuery = None) -> list[dict]:
        return await c.list_replicas(plan)

    @v1.post("/v1/failover", status_code=202)
    async def failover(req: Annotated[FailoverRequest, Body(openapi_examples=ex.FAILOVER)], c: C) -> dict:
        return started(c, await c.failover(req))

    @v1.post("/v1/failover/undo", status_code=202)
    async def undo_failover(req: Annotated[UndoFailoverRequest, Body(openapi_examples=ex.UNDO_FAILOVER)], c: C) -> dict:
        return started(c, await c.undo_failover(req))

    @v1.post("/v1/failover-tests", status_code=202)
    async def failover_test(req: Annotated[FailoverTestRequest, Body(openapi_examples=ex.FAILOVER_TEST)], c: C) -> dict:
        return started(c, await c.start_failover_test(req))

    @v1.post("/v1/failback", status_code=202)
    async def failback(req: Annotated[FailbackRequest, Body(openapi_examples=ex.FAILBACK)], c: C) -> dict:
        return started(c, await c.failback(req))

    @v1.post("/v1/permanent-failover", status_code=202)
    async def permanent_failover(
            req: Annotated[PermanentFailoverRequest, Body(openapi_examples=ex.PERMANENT_FAILOVER)], c: C) -> dict:
        return started(c, await c.permanent_failover(req))

    # -- jobs ---------------------------------------------------------------------------
    @v1.get("/v1/jobs")
    async def list_jobs(c: C, plan: PlanQuery = None,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[dict]:
        return await c.list_jobs(plan=plan, limit=limit)

    @v1.get("/v1/jobs/{workflow_id:path}")
    async def get_job(workflow_id: str, c: C) -> dict:
        return await c.describe_job(workflow_id)

    app.include_router(v1)
    return app
