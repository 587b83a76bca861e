"""`abdr backup-plan`: VMs, repository, schedule, window, retention; runs now or on schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.admin import BackupPlanView
from models.jobs import PlanRunResult
from models.plans import BackupPlanSpec, RunResult
from starter.cli.common import cli_errors, need_choice, with_client
from starter.cli.grammar import format_retention, format_schedule, format_window
from starter.cli.options import (
    CompressionOpt,
    ConsistencyOpt,
    DescOpt,
    JsonOpt,
    RetentionOpt,
    ScheduleOpt,
    TzOpt,
    VmsOpt,
    WindowOpt,
)
from starter.cli.plan_files import load_plan_file
from starter.cli.plan_options import (
    PlanKind,
    PlanOptions,
    add_pause_commands,
    add_save_commands,
    plan_from_options,
    save_plan,
)
from starter.cli.progress import plan_run_with_progress
from starter.cli.render import emit, render_backup_run, say, show_workflow, table, when

if TYPE_CHECKING:
    from starter.client import AbdrClient

app = typer.Typer(help="Backup plans: VMs, repository, schedule, window, retention.", no_args_is_help=True)

FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="A BackupPlanSpec as YAML (shorthands allowed).",
                                              exists=True, dir_okay=False)]
RepoOpt = Annotated[str | None, typer.Option("--repository", "-r", help="Repository name.")]
FullOpt = Annotated[str | None, typer.Option(
    "--full-schedule", help="Which due runs are full backups (same syntax; 'none' clears).")]
DelayOpt = Annotated[str | None, typer.Option("--delay", help="At the window's end: keep-go-on | stop-backup.")]
ServiceOpt = Annotated[str | None, typer.Option("--service", help="Backup service (default 'default').")]


def plan_row(p: BackupPlanView) -> dict:
    s = p.spec
    return {"name": s.name, "status": p.status, "vms": len(s.vms), "repository": s.repository,
            "schedule": format_schedule(s.schedule, with_zone=True),
            "full": format_schedule(s.full_schedule) if s.full_schedule else "first only",
            "window": format_window(s.window), "retention": format_retention(s.retention),
            "last result": p.last_result, "last run": when(p.last_run_at)}


def _said(action: str) -> Callable[[BackupPlanSpec], None]:
    def render(spec: BackupPlanSpec) -> None:
        say(f"backup plan [bold]{spec.name}[/bold] {action}: {len(spec.vms)} VMs -> repository "
                      f"{spec.repository}, {format_schedule(spec.schedule, with_zone=True)}, "
                      f"{format_retention(spec.retention)}")
    return render


async def _current(c: AbdrClient, name: str) -> dict:
    return (await c.get_backup_plan(name)).spec.model_dump(mode="json")


BACKUP = PlanKind("backup plan", load_plan_file, plan_from_options, _current,
                  lambda c, spec: c.create_backup_plan(spec), lambda c, spec: c.update_backup_plan(spec),
                  lambda c, name, paused: c.set_backup_plan_paused(name, paused))


def _save(update: bool) -> Callable[..., None]:
    """`create` (update=False) and `update`: one set of options, one way to a saved plan."""

    def save(
        name: Annotated[str | None, typer.Argument(help="Plan name (or the file's).")] = None,
        file: FileOpt = None, vm: VmsOpt = None, repository: RepoOpt = None, schedule: ScheduleOpt = None,
        full_schedule: FullOpt = None, window: WindowOpt = None, delay: DelayOpt = None,
        retention: RetentionOpt = None, tz: TzOpt = None, consistency: ConsistencyOpt = None,
        compression: CompressionOpt = None, service: ServiceOpt = None, description: DescOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        with cli_errors():
            opts = PlanOptions(vms=vm or None, repository=repository, schedule=schedule, full_schedule=full_schedule,
                               window=window, delay=delay, retention=retention, tz=tz, consistency=consistency,
                               compression=compression, service=service, description=description)
            emit(save_plan(BACKUP, update, name, file, opts), as_json, _said("updated" if update else "created"))

    return save


add_save_commands(app, BACKUP, _save)
add_pause_commands(app, BACKUP)


@app.command("list")
def plan_list(as_json: JsonOpt = False) -> None:
    """List backup plans with their state and last result."""
    with cli_errors():
        plans = with_client(lambda c: c.list_backup_plans())
        emit(plans, as_json, lambda rows: table(
            [plan_row(p) for p in rows], ["name", "status", "vms", "repository", "schedule", "window",
                                          "retention", "last result", "last run"], "backup plans"))


@app.command("show")
def plan_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one plan in full."""
    with cli_errors():
        emit(with_client(lambda c: c.get_backup_plan(name)), as_json, _render_plan)


def _render_plan(p: BackupPlanView) -> None:
    s = p.spec
    row = plan_row(p)
    rows = [{"field": k, "value": v} for k, v in row.items() if k != "vms"]
    rows[1:1] = [{"field": "description", "value": s.description},
                 {"field": "vms", "value": ", ".join(f"{v.cluster}/{v.vm}" for v in s.vms)},
                 {"field": "service", "value": s.backup_service}]
    rows += [{"field": "delay option", "value": s.delay_option},
             {"field": "consistency", "value": s.consistency},
             {"field": "compression", "value": "on" if s.compression else "off"}]
    table(rows, ["field", "value"], f"backup plan {s.name}")


@app.command("delete")
def plan_delete(
    name: str,
    points: Annotated[bool | None, typer.Option(
        "--delete-points/--keep-points", help="Delete the plan's restore points too, or keep them (required).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a plan and its schedule; say what happens to its restore points."""
    with cli_errors():
        delete_points = need_choice(points, "say what happens to the plan's restore points: "
                                            "--keep-points or --delete-points")
        out = with_client(lambda c: c.delete_backup_plan(name, delete_points))
        emit(out, as_json, lambda o: say(
            f"backup plan [bold]{name}[/bold] deleted; {len(o.points)} restore points "
            f"{'deleted' if o.points_deleted else 'kept'}"))


@app.command("run")
def plan_run(
    name: str,
    full: Annotated[bool, typer.Option("--full", help="Full backups, whatever the schedule says.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress, print per-VM results; "
                                                      "exit 1 unless SUCCESS.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a plan now (a manual run: its points are MANUAL, kept until deleted by hand)."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, Any, PlanRunResult | None]:
            handle = await c.run_backup_plan(name, full=full)
            if not wait:
                return c, handle, None
            return c, handle, await plan_run_with_progress(c, handle, show=not as_json)

        client, handle, result = with_client(run)
        if result is None:
            show_workflow(client, handle, as_json, f"backup plan {name}")
            return
        out = {**result.model_dump(mode="json"), "workflow_id": handle.id, "ui": client.ui_link(handle.id)}
        emit(out, as_json, render_backup_run)
        if result.result != RunResult.SUCCESS:
            raise typer.Exit(1)
