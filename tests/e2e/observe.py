"""Watching a run from outside, as an operator would: the durable heartbeat details the
server recorded for a running activity (what a retry resumes from)."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from pydantic import BaseModel
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

M = TypeVar("M", bound=BaseModel)


async def heartbeat(client: Client, workflow_id: str, activity: str, model: type[M]) -> tuple[M, int] | None:
    """The last heartbeat details the server holds for `activity` pending in the workflow,
    and the activity's attempt; None while it has none (or the workflow has not started)."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name == activity and pending.heartbeat_details.payloads:
            [details] = await client.data_converter.decode(pending.heartbeat_details.payloads)
            return model.model_validate(details), pending.attempt
    return None


async def wait_heartbeat(client: Client, workflow_id: str, activity: str, model: type[M], done: str,
                         at_least: int, polls: int = 1200) -> M:
    """Poll until the recorded heartbeat's field `done` reaches `at_least`."""
    for _ in range(polls):
        seen = await heartbeat(client, workflow_id, activity, model)
        if seen is not None and getattr(seen[0], done) >= at_least:
            return seen[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{activity} of {workflow_id} recorded no progress of {at_least} {done}")
