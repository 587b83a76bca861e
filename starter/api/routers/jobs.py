"""/v1/jobs: runs of operations, to follow a 202's workflow."""

from typing import Annotated

from fastapi import APIRouter, Query

from models.admin import Job, JobDescription
from starter.api.dependencies import C, PlanQuery
from starter.api.errors import ERROR_RESPONSES

router = APIRouter(responses=ERROR_RESPONSES)


@router.get("/v1/jobs")
async def list_jobs(c: C, plan: PlanQuery = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[Job]:
    return await c.list_jobs(plan=plan, limit=limit)


@router.post("/v1/jobs/{workflow_id:path}/cancel")
async def cancel_job(workflow_id: str, c: C, wait: bool = False) -> JobDescription:
    """Cancel a running job (its steps clean up after themselves, as at a window's end); with
    `wait`, answer once it has ended. 409: it is not running; 400: a job of a kind that
    would stop half-done (only plan runs and their VMs' backups and replications cancel)."""
    return await c.cancel_job(workflow_id, wait=wait)


@router.get("/v1/jobs/{workflow_id:path}")
async def get_job(workflow_id: str, c: C) -> JobDescription:
    return await c.describe_job(workflow_id)
