"""Activity calls routed to a site's queue (that site's backup/replication service), with one
helper per runbook step so DR workflows read as their runbooks. Deterministic; imports only
temporalio + models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from models.activity_api import BackupApi, ReplicationApi, RestoreApi, activity_name
    from models.inventory import ShutdownMode
    from models.jobs import PowerInput, SnapshotInput, SnapshotRef
    from models.queues import site_task_queue
    from models.replication_jobs import PowerStateReply, PullInput, PullResult, ShutdownInput, SnapshotDrop, VMAt

from workflows.backup import SITE_HEARTBEAT  # every site activity heartbeats (activities/heartbeat.py)
from workflows.common import A, R, retry

PULL_HEARTBEAT = timedelta(seconds=10)
PROBE = timedelta(seconds=20)  # how long a reachability check of a site may take


def refuse(message: str, kind: str = "InvalidState") -> ApplicationError:
    """A refusal: nothing a retry can fix, said to the user as is."""
    return ApplicationError(message, type=kind, non_retryable=True)


class Sites:
    """Activity calls routed to a site's queue. Calls to a site that is down fail after
    `reach` instead of waiting forever (unplanned failover must not hang on the source)."""

    def __init__(self, max_retries: int = 3, interval_s: int = 30) -> None:
        self.policy = retry(max_retries, interval_s)

    async def call(self, site: str, activity: Callable[[Any, A], R], arg: A, *,
                   reach: timedelta = timedelta(minutes=10), start_to_close_timeout: timedelta = timedelta(minutes=10),
                   heartbeat_timeout: timedelta = SITE_HEARTBEAT, retry_policy: RetryPolicy | None = None) -> R:
        """Run `activity` (a method of models/activity_api.py) on `site`'s queue."""
        return await workflow.execute_activity_method(
            activity, arg, task_queue=site_task_queue(site), summary=f"{activity_name(activity)} @{site}",
            start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy or self.policy,
            schedule_to_close_timeout=reach, heartbeat_timeout=heartbeat_timeout)

    async def pull(self, site: str, inp: PullInput) -> PullResult:
        return await self.call(site, ReplicationApi.pull_extents, inp, reach=timedelta(hours=24),
                               start_to_close_timeout=timedelta(hours=24), heartbeat_timeout=PULL_HEARTBEAT)

    # -- runbook steps -------------------------------------------------------------------

    async def snapshot(self, site: str, at: VMAt, name: str, consistency: Any) -> SnapshotRef:
        return await self.call(site, BackupApi.create_snapshot, SnapshotInput(cluster=at.cluster, vm_id=at.vm_id,
                                                                              name=name, consistency=consistency))

    async def drop_snapshot(self, site: str, at: VMAt, snapshot_id: str, best_effort: bool = False) -> None:
        """Drop a snapshot; `best_effort`: one left behind is harmless (a later run drops it),
        so a failure to drop it is logged, not raised."""
        try:
            await self.call(site, ReplicationApi.drop_snapshot,
                            SnapshotDrop(at=at.model_copy(update={"snapshot_id": snapshot_id})))
        except ActivityError as e:
            if not best_effort:
                raise
            workflow.logger.warning("snapshot %s on site %s left behind: %s", snapshot_id, site, e.cause or e)

    async def power(self, site: str, at: VMAt, on: bool) -> None:
        await self.call(site, RestoreApi.set_power, PowerInput(cluster=at.cluster, vm_id=at.vm_id, on=on))

    async def rollback(self, site: str, at: VMAt, snapshot_id: str) -> None:
        await self.call(site, ReplicationApi.rollback_vm, at.model_copy(update={"snapshot_id": snapshot_id}))

    async def shutdown(self, site: str, at: VMAt, mode: ShutdownMode, timeout_s: int) -> PowerStateReply:
        return await self.call(site, ReplicationApi.shutdown_vm, ShutdownInput(at=at, mode=mode, timeout_s=timeout_s),
                               reach=timedelta(seconds=timeout_s * 2 + 60),
                               start_to_close_timeout=timedelta(seconds=timeout_s + 60))

    async def probe(self, site: str, at: VMAt) -> PowerStateReply:
        """A VM's power state, telling 'the site did not answer' (reachable=False) from 'the
        site answered': a VM the site says does not exist is ABSENT; any other answer that
        is an error is raised (SourceUnknown), since nobody can then say it is not running."""
        try:
            return await self.call(site, ReplicationApi.power_state, at, reach=PROBE,
                                   start_to_close_timeout=PROBE,
                                   retry_policy=retry(max_retries=10, interval_s=1))
        except ActivityError as e:
            cause = e.cause
            if isinstance(cause, TimeoutError) and not isinstance(cause.cause, ApplicationError):
                return PowerStateReply(state="UNKNOWN", reachable=False)
            answer = cause.cause if isinstance(cause, TimeoutError) else cause
            if isinstance(answer, ApplicationError) and answer.type == "NotFound":
                return PowerStateReply(state="ABSENT")
            raise refuse(f"site {site} answered but could not tell whether VM {at.vm_id} is running: "
                         f"{answer or e}", "SourceUnknown") from None

    async def known_running(self, site: str, at: VMAt) -> bool:
        """For an undo about to start the other copy: True only when the site says this VM
        runs. No answer, or an error, is not known running: the undo goes on (compensation
        must finish) and starts the copy it stopped, as it would have without the check."""
        try:
            return (await self.probe(site, at)).state == "RUNNING"
        except ApplicationError:
            return False
