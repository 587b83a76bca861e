"""/v1/replication-plans: the plans and manual runs."""

from typing import Annotated

from fastapi import APIRouter, Body

from models.admin import ReplicationPlanView
from models.replication import ReplicationPlanSpec
from starter.api import examples as ex
from starter.api.dependencies import C, PlanName, Started, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/replication-plans")
async def list_replication_plans(c: C) -> list[ReplicationPlanView]:
    return await c.list_replication_plans()


@router.post("/v1/replication-plans", status_code=201)
async def create_replication_plan(
        spec: Annotated[ReplicationPlanSpec, Body(openapi_examples=ex.REPLICATION_PLAN)], c: C) -> ReplicationPlanSpec:
    return await c.create_replication_plan(spec)


@router.post("/v1/replication-plans/{name}/run", status_code=202)
async def run_replication_plan(name: PlanName, c: C) -> Started:
    return started(c, await c.run_replication_plan(name))
