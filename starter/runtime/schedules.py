"""A plan's Temporal Schedule: create-or-update, pause, resume, delete.

One schedule per plan (`backup-plan/<name>`, `replication-plan/<name>`). A backup plan's
spec is the union of the incremental and the full-backup schedule (both folded with the
window). Each action starts the plan's tick workflow, which (for backups) decides full vs
incremental from the scheduled time and runs the plan under its single workflow id, so
scheduled and manual runs never overlap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes as sa
from models.jobs import Operation, PlanTickInput
from models.plans import BackupPlanSpec
from models.queues import WORKFLOW_TASK_QUEUE
from models.replication import ReplicationPlanSpec
from models.replication_jobs import ReplicationTickInput
from models.schedule_spec import skip_policy, to_schedule_spec
from workflows.plan_run import BackupPlanTickWorkflow
from workflows.replication_plan import ReplicationPlanTickWorkflow

AnyPlan = BackupPlanSpec | ReplicationPlanSpec


def kind_of(spec: AnyPlan) -> str:
    return "backup" if isinstance(spec, BackupPlanSpec) else "replication"


def schedule_id(plan: str, kind: str = "backup") -> str:
    return f"{kind}-plan/{plan}"


def plan_spec(spec: AnyPlan) -> ScheduleSpec:
    inc = to_schedule_spec(spec.schedule, spec.window)
    if not isinstance(spec, BackupPlanSpec) or spec.full_schedule is None:
        return inc
    full = to_schedule_spec(spec.full_schedule, spec.window)
    return ScheduleSpec(calendars=[*inc.calendars, *full.calendars], time_zone_name=inc.time_zone_name)


def plan_schedule(spec: AnyPlan, paused: bool = False) -> Schedule:
    kind = kind_of(spec)
    tick: Callable[..., Awaitable[Any]]  # the plan kind's tick workflow
    arg: Any
    if kind == "backup":
        tick, arg, op = BackupPlanTickWorkflow.run, PlanTickInput(plan=spec.name), Operation.BACKUP_PLAN
    else:
        tick, arg = ReplicationPlanTickWorkflow.run, ReplicationTickInput(plan=spec.name)
        op = Operation.REPLICATION_PLAN
    return Schedule(
        action=ScheduleActionStartWorkflow(
            tick, arg, id=f"{kind}-plan-tick/{spec.name}", task_queue=WORKFLOW_TASK_QUEUE,
            typed_search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAN, spec.name), SearchAttributePair(sa.OPERATION, op.value)]),
            static_summary=f"scheduled run of {kind} plan {spec.name}",
            static_details=f"Started by the schedule {schedule_id(spec.name, kind)} (abdr {kind}-plan {spec.name}).",
        ),
        spec=plan_spec(spec),
        policy=skip_policy(),
        state=ScheduleState(paused=paused, note=spec.description or None),
    )


async def upsert(client: Client, spec: AnyPlan, paused: bool = False) -> None:
    wanted = plan_schedule(spec, paused)
    sid = schedule_id(spec.name, kind_of(spec))
    try:
        await client.create_schedule(sid, wanted)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(sid).update(replace)


async def set_paused(client: Client, plan: str, paused: bool, note: str, kind: str = "backup") -> None:
    handle = client.get_schedule_handle(schedule_id(plan, kind))
    await (handle.pause(note=note) if paused else handle.unpause(note=note))


async def pause_if_present(client: Client, plan: str, kind: str, note: str) -> None:
    """Pause the plan's schedule; a plan without one (never scheduled, or deleted) is fine."""
    try:
        await set_paused(client, plan, True, note, kind)
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise


async def delete(client: Client, plan: str, kind: str = "backup") -> None:
    try:
        await client.get_schedule_handle(schedule_id(plan, kind)).delete()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
