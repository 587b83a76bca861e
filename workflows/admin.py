"""Administrative calls (plans, repositories, sites, listings) as short workflows, so the
CLI, the API and services need only a Temporal connection: the catalog stays behind the
workers. A call runs one activity on the queue that owns the I/O: the catalog's (the
workflow queue) or a site's (repository initialisation, restore-point deletion)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.inventory import Strict
    from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue

from workflows.common import retry


class AdminCall(Strict):
    """`operation` names an activity `admin_<operation>`; `site` routes it to that site's
    worker (None: the catalog's)."""

    operation: str
    payload: dict[str, Any] = {}
    site: str | None = None


@workflow.defn(name="Admin")
class AdminWorkflow:
    @workflow.run
    async def run(self, call: AdminCall) -> Any:
        queue = site_task_queue(call.site) if call.site else WORKFLOW_TASK_QUEUE
        workflow.set_current_details(f"{call.operation} on {queue}")
        return await workflow.execute_activity(
            f"admin_{call.operation}", call.payload, task_queue=queue, summary=call.operation,
            start_to_close_timeout=timedelta(minutes=5), schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=retry(3, 1))
