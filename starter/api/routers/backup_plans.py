"""/v1/backup-plans: the plans, their schedules and manual runs."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.admin import BackupPlanView, DeletedBackupPlan
from models.plans import BackupPlanSpec
from starter.api import examples as ex
from starter.api.dependencies import C, PlanName, Started, same_name, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/backup-plans")
async def list_backup_plans(c: C) -> list[BackupPlanView]:
    return await c.list_backup_plans()


@router.post("/v1/backup-plans", status_code=201)
async def create_backup_plan(spec: Annotated[BackupPlanSpec, Body(openapi_examples=ex.BACKUP_PLAN)],
                             c: C) -> BackupPlanSpec:
    return await c.create_backup_plan(spec)


@router.get("/v1/backup-plans/{name}")
async def get_backup_plan(name: PlanName, c: C) -> BackupPlanView:
    return await c.get_backup_plan(name)


@router.put("/v1/backup-plans/{name}")
async def update_backup_plan(name: PlanName, spec: Annotated[BackupPlanSpec, Body(openapi_examples=ex.BACKUP_PLAN)],
                             c: C) -> BackupPlanSpec:
    same_name(name, spec.name, "plan")
    return await c.update_backup_plan(spec)


@router.delete("/v1/backup-plans/{name}")
async def delete_backup_plan(name: PlanName, c: C, delete_points: bool = False) -> DeletedBackupPlan:
    return await c.delete_backup_plan(name, delete_points)


@router.post("/v1/backup-plans/{name}/pause")
async def pause_backup_plan(name: PlanName, c: C) -> BackupPlanView:
    return await c.set_backup_plan_paused(name, True)


@router.post("/v1/backup-plans/{name}/resume")
async def resume_backup_plan(name: PlanName, c: C) -> BackupPlanView:
    return await c.set_backup_plan_paused(name, False)


@router.post("/v1/backup-plans/{name}/run", status_code=202)
async def run_backup_plan(name: PlanName, c: C, full: bool = False) -> Started:
    return started(c, await c.run_backup_plan(name, full=full))
