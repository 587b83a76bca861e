"""The DR operations on a replica: failover and its undo, failover tests, failback and
permanent failover. Each starts its workflow and answers 202."""

from typing import Annotated

from fastapi import APIRouter, Body, Path

from models.inventory import Name
from models.replication_jobs import DrOperationResult
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    FailoverTestRequest,
    PermanentFailoverRequest,
    UndoFailoverRequest,
)
from starter.api import examples as ex
from starter.api.dependencies import C, PlanName, Started, started
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.post("/v1/failover", status_code=202)
async def failover(req: Annotated[FailoverRequest, Body(openapi_examples=ex.FAILOVER)], c: C) -> Started:
    return started(c, await c.failover(req))


@router.post("/v1/failover/undo", status_code=202)
async def undo_failover(req: Annotated[UndoFailoverRequest, Body(openapi_examples=ex.UNDO_FAILOVER)], c: C) -> Started:
    return started(c, await c.undo_failover(req))


@router.post("/v1/failover-tests", status_code=202)
async def failover_test(req: Annotated[FailoverTestRequest, Body(openapi_examples=ex.FAILOVER_TEST)], c: C) -> Started:
    return started(c, await c.start_failover_test(req))


@router.post("/v1/failover-tests/{plan}/{vm}/cleanup")
async def cleanup_failover_test(plan: PlanName, vm: Annotated[Name, Path(description="The protected VM's name.")],
                                c: C) -> DrOperationResult:
    """End the running failover test of the VM: its copy is deleted; answers, once it is,
    what the test found (404: no test of it is running)."""
    return await c.cleanup_failover_test(plan, vm)


@router.post("/v1/failback", status_code=202)
async def failback(req: Annotated[FailbackRequest, Body(openapi_examples=ex.FAILBACK)], c: C) -> Started:
    return started(c, await c.failback(req))


@router.post("/v1/permanent-failover", status_code=202)
async def permanent_failover(
        req: Annotated[PermanentFailoverRequest, Body(openapi_examples=ex.PERMANENT_FAILOVER)], c: C) -> Started:
    return started(c, await c.permanent_failover(req))
