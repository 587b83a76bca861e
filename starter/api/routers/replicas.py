"""/v1/replicas: each replicated VM's copy and its state."""

from fastapi import APIRouter

from models.admin import ReplicaView
from starter.api.dependencies import C, PlanQuery
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/replicas")
async def list_replicas(c: C, plan: PlanQuery = None) -> list[ReplicaView]:
    return await c.list_replicas(plan)
