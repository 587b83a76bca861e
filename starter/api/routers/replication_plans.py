"""/v1/replication-plans: the plans, their schedules and manual runs."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.admin import DeletedPlan, ReplicationPlanView
from models.replication import ReplicationPlanSpec
from starter.api import examples as ex
from starter.api.dependencies import C, PlanName, Started, same_name, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/replication-plans")
async def list_replication_plans(c: C) -> list[ReplicationPlanView]:
    return await c.list_replication_plans()


@router.post("/v1/replication-plans", status_code=201)
async def create_replication_plan(
        spec: Annotated[ReplicationPlanSpec, Body(openapi_examples=ex.REPLICATION_PLAN)], c: C) -> ReplicationPlanSpec:
    return await c.create_replication_plan(spec)


@router.get("/v1/replication-plans/{name}")
async def get_replication_plan(name: PlanName, c: C) -> ReplicationPlanView:
    return await c.get_replication_plan(name)


@router.put("/v1/replication-plans/{name}")
async def update_replication_plan(
        name: PlanName, spec: Annotated[ReplicationPlanSpec, Body(openapi_examples=ex.REPLICATION_PLAN)],
        c: C) -> ReplicationPlanSpec:
    same_name(name, spec.name, "plan")
    return await c.update_replication_plan(spec)


@router.delete("/v1/replication-plans/{name}")
async def delete_replication_plan(name: PlanName, c: C) -> DeletedPlan:
    """Delete a plan and its schedule (the replica VMs stay on the target cluster)."""
    return await c.delete_replication_plan(name)


@router.post("/v1/replication-plans/{name}/pause")
async def pause_replication_plan(name: PlanName, c: C) -> ReplicationPlanView:
    return await c.set_replication_plan_paused(name, True)


@router.post("/v1/replication-plans/{name}/resume")
async def resume_replication_plan(name: PlanName, c: C) -> ReplicationPlanView:
    return await c.set_replication_plan_paused(name, False)


@router.post("/v1/replication-plans/{name}/run", status_code=202)
async def run_replication_plan(name: PlanName, c: C) -> Started:
    return started(c, await c.run_replication_plan(name))
