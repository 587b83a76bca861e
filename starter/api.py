"""abdr's REST API for services in other languages: the same operations as the Python
client (it is a thin layer over `AbdrClient`), an OpenAPI document at /openapi.json, and
bearer-token authentication (`ABDR_API_TOKEN`). Long operations return 202 with their
workflow id and Web UI link; `GET /v1/jobs/{workflow_id}` follows them.

    abdr api --port 8080
"""


import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from temporalio.client import WorkflowHandle

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
from starter.client import AbdrClient, AbdrError
from starter.settings import Settings

bearer = HTTPBearer(auto_error=False)


def make_api(settings: Settings, token: str, connect: Callable[[], Awaitable[AbdrClient]] | None = None) -> FastAPI:
    if not token:
        raise ValueError("the REST API needs a token: set ABDR_API_TOKEN")
    state: dict[str, AbdrClient] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["client"] = await (connect() if connect else AbdrClient.connect(settings))
        yield

    app = FastAPI(title="abdr", version="1", lifespan=lifespan,
                  description="Disaster recovery for virtual machines: backup plans, restore, replication, "
                              "failover, failback. Every call needs `Authorization: Bearer <token>`.")

    def client(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> AbdrClient:
        if creds is None or not hmac.compare_digest(creds.credentials.encode(), token.encode()):
            raise HTTPException(401, "a valid bearer token is required")
        return state["client"]

    C = Annotated[AbdrClient, Depends(client)]

    @app.exception_handler(AbdrError)
    async def _abdr_error(_: Request, e: AbdrError) -> JSONResponse:
        msg = str(e)
        status = 404 if "not found" in msg else 409 if ("already" in msg or "running" in msg) else 400
        return JSONResponse({"error": msg}, status_code=status)

    def started(c: AbdrClient, h: WorkflowHandle) -> dict[str, Any]:
        return {"workflow_id": h.id, "run_id": h.result_run_id, "ui": c.ui_link(h.id, h.result_run_id)}

    # -- backup ---------------------------------------------------------------------------
    @app.get("/v1/backup-plans")
    async def list_backup_plans(c: C) -> list[dict]:
        return await c.list_backup_plans()

    @app.post("/v1/backup-plans", status_code=201)
    async def create_backup_plan(spec: BackupPlanSpec, c: C) -> dict:
        return await c.create_backup_plan(spec)

    @app.get("/v1/backup-plans/{name}")
    async def get_backup_plan(name: str, c: C) -> dict:
        return await c.get_backup_plan(name)

    @app.put("/v1/backup-plans/{name}")
    async def update_backup_plan(name: str, spec: BackupPlanSpec, c: C) -> dict:
        if spec.name != name:
            raise HTTPException(400, f"the body names plan {spec.name!r}, the path {name!r}")
        return await c.update_backup_plan(spec)

    @app.delete("/v1/backup-plans/{name}")
    async def delete_backup_plan(name: str, c: C, delete_points: bool = False) -> dict:
        return await c.delete_backup_plan(name, delete_points)

    @app.post("/v1/backup-plans/{name}/pause")
    async def pause_backup_plan(name: str, c: C) -> dict:
        return await c.set_backup_plan_paused(name, True)

    @app.post("/v1/backup-plans/{name}/resume")
    async def resume_backup_plan(name: str, c: C) -> dict:
        return await c.set_backup_plan_paused(name, False)

    @app.post("/v1/backup-plans/{name}/run", status_code=202)
    async def run_backup_plan(name: str, c: C, full: bool = False) -> dict:
        return started(c, await c.run_backup_plan(name, full=full))

    @app.get("/v1/restore-points")
    async def list_restore_points(c: C, plan: str | None = None, vm: str | None = None) -> list[dict]:
        return await c.list_restore_points(plan=plan, vm=vm)

    @app.post("/v1/restores", status_code=202)
    async def restore(req: RestoreRequest, c: C) -> dict:
        return started(c, await c.restore(req))

    # -- replication and DR -------------------------------------------------------------------
    @app.get("/v1/replication-plans")
    async def list_replication_plans(c: C) -> list[dict]:
        return await c.list_replication_plans()

    @app.post("/v1/replication-plans", status_code=201)
    async def create_replication_plan(spec: ReplicationPlanSpec, c: C) -> dict:
        return await c.create_replication_plan(spec)

    @app.post("/v1/replication-plans/{name}/run", status_code=202)
    async def run_replication_plan(name: str, c: C) -> dict:
        return started(c, await c.run_replication_plan(name))

    @app.get("/v1/replicas")
    async def list_replicas(c: C, plan: str | None = None) -> list[dict]:
        return await c.list_replicas(plan)

    @app.post("/v1/failover", status_code=202)
    async def failover(req: FailoverRequest, c: C) -> dict:
        return started(c, await c.failover(req))

    @app.post("/v1/failover/undo", status_code=202)
    async def undo_failover(req: UndoFailoverRequest, c: C) -> dict:
        return started(c, await c.undo_failover(req))

    @app.post("/v1/failover-tests", status_code=202)
    async def failover_test(req: FailoverTestRequest, c: C) -> dict:
        return started(c, await c.start_failover_test(req))

    @app.post("/v1/failback", status_code=202)
    async def failback(req: FailbackRequest, c: C) -> dict:
        return started(c, await c.failback(req))

    @app.post("/v1/permanent-failover", status_code=202)
    async def permanent_failover(req: PermanentFailoverRequest, c: C) -> dict:
        return started(c, await c.permanent_failover(req))

    # -- jobs ---------------------------------------------------------------------------
    @app.get("/v1/jobs")
    async def list_jobs(c: C, plan: str | None = None, limit: int = 50) -> list[dict]:
        return await c.list_jobs(plan=plan, limit=limit)

    @app.get("/v1/jobs/{workflow_id:path}")
    async def get_job(workflow_id: str, c: C) -> dict:
        return await c.describe_job(workflow_id)

    return app
