"""A health check: one activity on a site's queue, so a caller learns that the workflow
worker and that site's activity worker both run work."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import HealthApi
    from models.health import HealthCheckInput, SiteWorkerInfo
    from models.queues import site_task_queue


@workflow.defn(name="HealthCheck")
class HealthCheckWorkflow:
    @workflow.run
    async def run(self, req: HealthCheckInput) -> SiteWorkerInfo:
        return await workflow.execute_activity_method(
            HealthApi.site_worker_info,
            req,
            task_queue=site_task_queue(req.site),
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=timedelta(seconds=20),
        )
