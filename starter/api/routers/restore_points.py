"""/v1/restore-points and /v1/restores: what the backups made, and restoring one."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.requests import RestoreRequest
from models.restore_points import RestorePointSummary
from starter.api import examples as ex
from starter.api.dependencies import C, PlanQuery, Started, VMQuery, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/restore-points")
async def list_restore_points(c: C, plan: PlanQuery = None, vm: VMQuery = None) -> list[RestorePointSummary]:
    return await c.list_restore_points(plan=plan, vm=vm)


@router.post("/v1/restores", status_code=202)
async def restore(req: Annotated[RestoreRequest, Body(openapi_examples=ex.RESTORE)], c: C) -> Started:
    return started(c, await c.restore(req))
