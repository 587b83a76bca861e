"""`abdr job`: runs of operations, with their Temporal workflows."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from models.admin import JobDescription
from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt
from starter.cli.render import emit, emit_json, render_backup_run, say, table, when

app = typer.Typer(help="Jobs: runs of operations, with their Temporal workflows.", no_args_is_help=True)


@app.command("list")
def job_list(
    plan: Annotated[str | None, typer.Option(help="Only this plan's jobs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest N.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent jobs, newest first (each links to its workflow in the Web UI)."""
    with cli_errors():
        jobs = with_client(lambda c: c.list_jobs(plan=plan, limit=limit))
        emit(jobs, as_json, lambda rows: table(
            [{**j.model_dump(mode="json"), "error": escape(str(j.result.get("error", "")))} for j in rows],
            ["workflow_id", "operation", "status", "plan", "vm", "started_at", "finished_at", "error"], "jobs"))


@app.command("show")
def job_show(workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID")], as_json: JsonOpt = False) -> None:
    """Show a job's workflow: status, per-VM results or progress, and its Web UI link."""
    with cli_errors():
        emit(with_client(lambda c: c.describe_job(workflow_id)), as_json, _render_job)


@app.command("cancel")
def job_cancel(workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID")],
               wait: Annotated[bool, typer.Option("--wait", help="Wait until the job has ended.")] = False,
               as_json: JsonOpt = False) -> None:
    """Cancel a running job: its workflow stops, and each step cleans up after itself (a
    backup deletes its snapshot and partial files); exit 4 if it is not running."""
    with cli_errors():
        emit(with_client(lambda c: c.cancel_job(workflow_id, wait=wait)), as_json, _render_job)


def _render_job(j: JobDescription) -> None:
    say(f"[bold]{j.workflow_id}[/bold] ({j.type}) {j.status}\n"
                  f"  started {when(j.started_at)}" + (f", closed {when(j.closed_at)}" if j.closed_at else "")
                  + f"\n  {j.ui}" + (f"\n  [red]{escape(j.error)}[/red]" if j.error else ""))
    result = j.result
    progress = j.progress
    if progress:
        say(f"  progress: {progress['vms_done']}/{progress['vms_total']} VMs")
    vms = result.get("vms") if isinstance(result, dict) else (progress or {}).get("results")
    if vms:
        render_backup_run({"plan": (result or {}).get("plan", j.workflow_id), "vms": vms,
                     "result": (result or {}).get("result", j.status),
                     "skipped_reason": (result or {}).get("skipped_reason", ""), "ui": j.ui})
    elif result is not None:
        emit_json(result)
