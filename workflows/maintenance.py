"""Repository maintenance: prune by every plan's retention, verify, garbage-collect, as one
activity on the repository's site (the repository's own lock keeps two apart)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activity_api import CatalogApi, SiteAdminApi
    from models.jobs import MaintenanceInput, MaintenanceResult, Operation
    from models.queues import site_task_queue

from workflows.common import catalog, phase, record_job, retry, tag

# Verify and GC report every few seconds of elapsed time, whatever the repository's size or
# speed (drivers/repository/progress.py): a minute without news is a dead worker.
HEARTBEAT_TIMEOUT = timedelta(minutes=1)


@workflow.defn(name="RepositoryMaintenance")
class RepositoryMaintenanceWorkflow:
    @workflow.run
    async def run(self, inp: MaintenanceInput) -> MaintenanceResult:
        tag(Operation.MAINTENANCE, phase="resolve")
        repo = await catalog(CatalogApi.get_repository, inp)
        tag(Operation.MAINTENANCE, site=repo.site)
        await record_job(Operation.MAINTENANCE, "RUNNING")
        steps = ", ".join(s for s, on in (("prune", inp.prune), ("verify", inp.verify), ("gc", inp.gc)) if on)
        phase("maintain", f"{steps} on repository {repo.name}")
        result = await workflow.execute_activity_method(
            SiteAdminApi.maintain_repository, inp, task_queue=site_task_queue(repo.site),
            start_to_close_timeout=timedelta(hours=12), heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=retry(2, 60), summary=f"{steps} {repo.name}")
        status = "SUCCESS" if not result.damaged else "DAMAGED"
        await record_job(Operation.MAINTENANCE, status, result=result.model_dump(mode="json"), finished=True)
        phase("done", status)
        return result
