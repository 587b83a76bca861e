"""What the DR commands share: start the workflow, then print its id and Web UI link, or
with --wait its result (a failure names the workflow to look at)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from models.replication_jobs import DrOperationResult
from starter.cli.common import with_client
from starter.cli.progress import with_spinner
from starter.cli.render import emit, say, show_workflow

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from starter.client import AbdrClient


async def outcome(client: AbdrClient, handle: WorkflowHandle) -> DrOperationResult:
    """The operation's result; a failure names the workflow to look at."""
    from starter.client import AbdrError

    try:
        return await client.result(handle)
    except AbdrError as e:
        raise e.reworded(f"{e} (workflow {handle.id}: {client.ui_link(handle.id)})") from None


def run_dr(start: Callable[[AbdrClient], Awaitable[WorkflowHandle]], wait: bool, as_json: bool, what: str,
           render: Callable[[dict], str]) -> None:
    """Start a DR workflow; print its id and Web UI link, or with --wait its result."""
    async def run(c: AbdrClient) -> tuple[AbdrClient, WorkflowHandle, DrOperationResult | None]:
        handle = await start(c)
        if not wait:
            return c, handle, None
        return c, handle, await with_spinner(outcome(c, handle), f"{what} (workflow {handle.id})", not as_json)

    client, handle, result = with_client(run)
    if result is None:
        show_workflow(client, handle, as_json, what)
        return
    out = {**result.model_dump(mode="json"), "workflow_id": handle.id, "ui": client.ui_link(handle.id)}
    emit(out, as_json, lambda r: say(f"{render(r)}\n  workflow [bold]{r['workflow_id']}[/bold]\n  {r['ui']}"))
