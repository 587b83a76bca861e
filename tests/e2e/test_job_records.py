"""A job's record follows its run's real end, whatever way it ended: a restore that fails,
one terminated and one cancelled from Temporal (workflow code never sees a terminate) show
FAILED / TERMINATED / CANCELLED with the reason in `abdr job list` and `abdr job show`,
never RUNNING. Driven through the real CLI against the real dev server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle

from tests.e2e.conftest import Stack
from tests.e2e.test_backup_restore import plan_spec, run_plan


async def backed_up(stack: Stack) -> str:
    """A VM with one point; returns the point."""
    stack.make_vm("web")
    await stack.client.create_backup_plan(plan_spec("gold", ["web"]))
    [vm] = (await run_plan(stack, "gold")).vms
    assert vm.ok and vm.point_id
    return vm.point_id


async def start_restore(stack: Stack, point: str, *args: str) -> WorkflowHandle:
    started = await stack.cli_json("restore", point, "--mode", "rebuild", *args)
    return stack.client.client.get_workflow_handle(started["workflow_id"])


async def ended(handle: WorkflowHandle) -> None:
    with pytest.raises(WorkflowFailureError):
        await handle.result()


async def listed(stack: Stack, workflow_id: str) -> dict[str, Any]:
    [row] = [j for j in await stack.cli_json("job", "list") if j["workflow_id"] == workflow_id]
    return row


async def test_failed_restore_is_failed_with_its_reason(stack: Stack) -> None:
    point = await backed_up(stack)
    stack.make_vm("taken")  # the new name clashes: the restore fails once it has started
    handle = await start_restore(stack, point, "--new-name", "taken")
    await ended(handle)
    why = "a VM named 'taken' already exists"
    row = await listed(stack, handle.id)
    assert row["status"] == "FAILED" and row["finished_at"] is not None and why in row["result"]["error"], row
    table = await stack.cli("job", "list")
    assert "FAILED" in table and "already exists" in table and "RUNNING" not in table, table
    shown = await stack.cli_json("job", "show", handle.id)
    assert shown["status"] == "FAILED" and why in shown["error"], shown
    assert why in await stack.cli("job", "show", handle.id)


async def stuck_restore(stack: Stack, point: str, name: str) -> WorkflowHandle:
    """A restore that has started (its job RUNNING) and waits: its target cluster's site has
    no worker, so its first site activity stays pending."""
    handle = await start_restore(stack, point, "--new-name", name, "--target-cluster", "c2")
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if any(p.activity_type.name == "create_vm_for_restore" for p in pending):
            break
        await asyncio.sleep(0.1)
    assert (await listed(stack, handle.id))["status"] == "RUNNING"
    return handle


@pytest.mark.parametrize("how, status, why", [
    (lambda h: h.terminate(reason="operator stopped it"), "TERMINATED", "operator stopped it"),
    (lambda h: h.cancel(), "CANCELLED", "cancel"),
])
async def test_terminated_or_cancelled_run_says_so(stack: Stack, how: Callable[[WorkflowHandle], Awaitable[None]],
                                                  status: str, why: str) -> None:
    point = await backed_up(stack)
    await stack.client.add_site("s2")  # no worker serves it
    await stack.client.add_cluster("c2", "s2", "local", str(stack.tmp / "clusters" / "c2"))
    handle = await stuck_restore(stack, point, "copy")
    await how(handle)
    await ended(handle)
    row = await listed(stack, handle.id)
    assert row["status"] == status and why in row["result"]["error"].lower(), row
    shown = await stack.cli_json("job", "show", handle.id)
    assert shown["status"] == status and why in shown["error"].lower(), shown
    assert status in await stack.cli("job", "show", handle.id)
    # The end is final: listing again leaves the record as it is.
    assert await listed(stack, handle.id) == row
