"""/v1/replicas: each replicated VM's copy and its state, history and points."""

from typing import Annotated

from fastapi import APIRouter, Path, Query

from models.admin import ReplicaView
from models.inventory import Name
from models.replication_jobs import HistoryPage
from models.restore_points import RestorePointSummary
from starter.api.dependencies import C, PlanName, PlanQuery
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)
SourceVM = Annotated[Name, Path(description="The protected (source) VM's name.")]


@router.get("/v1/replicas")
async def list_replicas(c: C, plan: PlanQuery = None) -> list[ReplicaView]:
    return await c.list_replicas(plan)


@router.get("/v1/replicas/{plan}/{vm}/history")
async def replica_history(plan: PlanName, vm: SourceVM, c: C, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                          before: int | None = None) -> HistoryPage:
    """A page of the replica's state changes, newest first; `next_before` pages on."""
    return await c.replica_history(plan, vm, limit, before)


@router.get("/v1/replicas/{plan}/{vm}/points")
async def replica_points(plan: PlanName, vm: SourceVM, c: C) -> list[RestorePointSummary]:
    """The replica's points, newest first: the ids a failover's or failover test's `point` takes."""
    return await c.replica_points(plan, vm)
