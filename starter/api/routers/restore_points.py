"""/v1/restore-points and /v1/restores: what the backups made, and restoring one."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.admin import DeletedPoints, RestorePointDetail
from models.requests import RestoreRequest
from models.restore_points import RestorePointSummary
from starter.api import examples as ex
from starter.api.dependencies import C, PlanQuery, PointPath, Started, VMQuery, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/restore-points")
async def list_restore_points(c: C, plan: PlanQuery = None, vm: VMQuery = None) -> list[RestorePointSummary]:
    return await c.list_restore_points(plan=plan, vm=vm)


@router.get("/v1/restore-points/{point_id}")
async def get_restore_point(point_id: PointPath, c: C) -> RestorePointDetail:
    """A restore point and the VM configuration it holds."""
    return await c.get_restore_point(point_id)


@router.delete("/v1/restore-points/{point_id}")
async def delete_restore_point(point_id: PointPath, c: C) -> DeletedPoints:
    """Delete a restore point (the others stay restorable: each is independent)."""
    return await c.delete_restore_point(point_id)


@router.post("/v1/restores", status_code=202)
async def restore(req: Annotated[RestoreRequest, Body(openapi_examples=ex.RESTORE)], c: C) -> Started:
    return started(c, await c.restore(req))
