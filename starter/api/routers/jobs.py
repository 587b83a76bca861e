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


@router.get("/v1/jobs/{workflow_id:path}")
async def get_job(workflow_id: str, c: C) -> JobDescription:
    return await c.describe_job(workflow_id)
