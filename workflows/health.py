"""A health check: activities on a site's queue, so a caller learns that the workflow worker
and that site's activity worker both run work, and how that worker reaches each of the
site's clusters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import ClusterHealthApi, HealthApi
    from models.health import HealthCheckInput, SiteWorkerInfo
    from models.queues import site_task_queue

T = TypeVar("T")
CLUSTER_PROBE = "health-cluster-probe"  # runs recorded before it ran site_worker_info alone


def on_site(activity: Callable[[Any, HealthCheckInput], T], req: HealthCheckInput) -> Awaitable[T]:
    return workflow.execute_activity_method(activity, req, task_queue=site_task_queue(req.site),
                                            start_to_close_timeout=timedelta(seconds=10),
                                            schedule_to_close_timeout=timedelta(seconds=20))


@workflow.defn(name="HealthCheck")
class HealthCheckWorkflow:
    @workflow.run
    async def run(self, req: HealthCheckInput) -> SiteWorkerInfo:
        if not workflow.patched(CLUSTER_PROBE):
            return await on_site(HealthApi.site_worker_info, req)
        # both at once: the cluster probes (bounded per cluster on the worker) add no latency
        info, clusters = await asyncio.gather(on_site(HealthApi.site_worker_info, req),
                                              on_site(ClusterHealthApi.cluster_health, req))
        return info.model_copy(update={"cluster_health": clusters})
