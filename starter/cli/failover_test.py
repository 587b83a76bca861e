"""`abdr failover-test start|cleanup`: a copy of a replica at a point, started on an
isolated network while replication goes on."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from models.ids import drill_id
from models.replication_jobs import DrOperationResult
from models.requests import FailoverTestRequest
from starter.cli.common import cli_errors, with_client
from starter.cli.dr import outcome
from starter.cli.grammar import parse_duration
from starter.cli.options import JsonOpt, PlanArg, VmArg
from starter.cli.progress import POLL_S, with_spinner
from starter.cli.render import emit, say, show_workflow

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from starter.client import AbdrClient

app = typer.Typer(help="Failover tests: a copy of a replica at a point, started on an isolated network.",
                  no_args_is_help=True)


@app.command("start", no_args_is_help=True)
def test_start(
    plan: PlanArg, vm: VmArg,
    restore_point: Annotated[str, typer.Option("--restore-point", help="latest | a replica point id.")] = "latest",
    test_network: Annotated[str, typer.Option("--test-network", help="The isolated network of the copy.")]
    = "abdr-isolated",
    cleanup_after: Annotated[str, typer.Option("--cleanup-after", help="Seconds (or 30m, 2h, 1d) before the copy "
                                                                       "is removed unless cleaned up earlier.")]
    = "3600",
    expect_console: Annotated[str | None, typer.Option(
        "--expect-console", help="A regular expression the copy's serial console must show (libvirt clusters); "
                                 "default: any console output or a guest-agent ping.")] = None,
    boot_timeout: Annotated[str, typer.Option("--boot-timeout", help="Seconds (or 5m, 1h) the copy may take to "
                                                                     "show that it booted.")] = "600",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the copy runs and print its health check.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a copy of VM's replica at a point on an isolated network; replication goes on."""
    with cli_errors():
        req = FailoverTestRequest(plan=plan, vm=vm, point=restore_point, test_network=test_network,
                                  cleanup_after_s=parse_duration(cleanup_after, "--cleanup-after"),
                                  expect_console=expect_console,
                                  boot_timeout_s=parse_duration(boot_timeout, "--boot-timeout"))

        async def run(c: AbdrClient) -> tuple[AbdrClient, WorkflowHandle, dict | None]:
            handle = await c.start_failover_test(req)
            if not wait:
                return c, handle, None
            return c, handle, await with_spinner(_evidence(c, handle), f"starting the test copy of {plan}/{vm}",
                                                 not as_json)

        client, handle, evidence = with_client(run)
        if evidence is None:
            show_workflow(client, handle, as_json, f"failover test of {plan}/{vm}")
            if not as_json:
                say(f"  clean up with: abdr failover-test cleanup {plan} {vm}")
            return
        out = {**evidence, "workflow_id": handle.id, "ui": client.ui_link(handle.id)}
        emit(out, as_json, lambda e: say(
            f"test copy [bold]{e.get('test_vm', '-')}[/bold] of point {e.get('point', '?')} on network "
            f"{e.get('network', '?')}: {e.get('power_state', '?')}, {_health(e)}\n"
            f"  workflow [bold]{e['workflow_id']}[/bold]\n  {e['ui']}\n"
            f"  clean up with: abdr failover-test cleanup {plan} {vm}"))
        if not _passed(evidence):
            raise typer.Exit(1)


def _passed(e: dict) -> bool:
    """The drill's own verdict: the copy runs and showed its boot (or its disks match the point)."""
    shown = e.get("booted") if e.get("evidence") == "guest" else e.get("disks_match_point")
    return e.get("power_state") == "RUNNING" and bool(shown)


def _health(e: dict) -> str:
    """The check's verdict in words: what the guest showed, or whether the disks match."""
    if e.get("evidence") == "guest":
        if not e.get("booted"):
            return "[red]the guest showed no sign of a boot[/red]"
        lines = [ln for ln in str(e.get("console_tail") or "").splitlines() if ln.strip()]
        shown = f"console: {escape(lines[-1][:120])}" if lines else "its guest agent answered"
        return f"the guest booted ({shown})"
    return f"disks match the point: {'yes' if e.get('disks_match_point') else '[red]no[/red]'}"


async def _evidence(client: AbdrClient, handle: WorkflowHandle) -> dict:
    """The drill's health check, once it has one; a drill that ended first reports why."""
    from temporalio.client import WorkflowExecutionStatus

    from workflows.drill import FailoverTestWorkflow

    while True:
        d = await handle.describe()
        if d.status != WorkflowExecutionStatus.RUNNING:
            result = await outcome(client, handle)
            return result.details
        try:
            found = await asyncio.wait_for(handle.query(FailoverTestWorkflow.evidence), timeout=5)
        except Exception:  # between tasks: ask again
            found = None
        if found:
            return found
        await asyncio.sleep(POLL_S)


@app.command("cleanup", no_args_is_help=True)
def test_cleanup(plan: PlanArg, vm: VmArg, as_json: JsonOpt = False) -> None:
    """End a failover test: the copy is deleted; prints what the test found."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, DrOperationResult]:
            work = c.cleanup_failover_test(plan, vm)
            return c, await with_spinner(work, f"cleaning up the failover test of {plan}/{vm}", not as_json)

        client, result = with_client(run)
        wid = drill_id(plan, vm)
        out = {**result.model_dump(mode="json"), "workflow_id": wid, "ui": client.ui_link(wid)}

        def render(r: dict) -> None:
            d = r["details"]
            yes = {True: "yes", False: "[red]no[/red]"}
            say(f"failover test of [bold]{r['plan']}/{r['vm']}[/bold] cleaned up (replica {r['state']}): point "
                f"{r['point_id']}, test copy {d.get('test_vm', '-')} was {d.get('power_state', '?')}, disks matched "
                f"the point: {yes.get(d.get('disks_match_point'), '?')}, tested: {yes.get(d.get('tested'), '?')}\n"
                f"  workflow [bold]{r['workflow_id']}[/bold]\n  {r['ui']}")

        emit(out, as_json, render)
