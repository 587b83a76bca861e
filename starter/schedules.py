"""A plan's Temporal Schedule: create-or-update, pause, resume, delete.

One schedule per plan (`backup-plan/<name>`); its spec is the union of the incremental
and the full-backup schedule (both folded with the window). Each action starts
`BackupPlanTick`, which decides full vs incremental from the scheduled time and runs the
plan under its single workflow id, so scheduled and manual runs never overlap."""

from __future__ import annotations

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
from models.schedule_spec import skip_policy, to_schedule_spec


def schedule_id(plan: str) -> str:
    return f"backup-plan/{plan}"


def plan_spec(spec: BackupPlanSpec) -> ScheduleSpec:
    inc = to_schedule_spec(spec.schedule, spec.window)
    if spec.full_schedule is None:
        return inc
    full = to_schedule_spec(spec.full_schedule, spec.window)
    return ScheduleSpec(calendars=[*inc.calendars, *full.calendars], time_zone_name=inc.time_zone_name)


def plan_schedule(spec: BackupPlanSpec, paused: bool = False) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            "BackupPlanTick", PlanTickInput(plan=spec.name), id=f"backup-plan-tick/{spec.name}",
            task_queue=WORKFLOW_TASK_QUEUE,
            typed_search_attributes=TypedSearchAttributes([
                SearchAttributePair(sa.PLAN, spec.name),
                SearchAttributePair(sa.OPERATION, Operation.BACKUP_PLAN.value)]),
            static_summary=f"scheduled run of backup plan {spec.name}"),
        spec=plan_spec(spec),
        policy=skip_policy(),
        state=ScheduleState(paused=paused, note=spec.description or None),
    )


async def upsert(client: Client, spec: BackupPlanSpec, paused: bool = False) -> None:
    wanted = plan_schedule(spec, paused)
    try:
        await client.create_schedule(schedule_id(spec.name), wanted)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=wanted)

        await client.get_schedule_handle(schedule_id(spec.name)).update(replace)


async def set_paused(client: Client, plan: str, paused: bool, note: str) -> None:
    handle = client.get_schedule_handle(schedule_id(plan))
    await (handle.pause(note=note) if paused else handle.unpause(note=note))


async def delete(client: Client, plan: str) -> None:
    try:
        await client.get_schedule_handle(schedule_id(plan)).delete()
    except RPCError as e:
        if e.status != RPCStatusCode.NOT_FOUND:
            raise
