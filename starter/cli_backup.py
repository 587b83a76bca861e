"""`abdr backup-plan|restore-point|restore|job`: protecting VMs and getting them back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from models.jobs import PlanRunResult, RestoreResult
from models.plans import BackupPlanSpec, RunResult
from models.requests import RestoreMode, RestoreRequest
from starter.cli_common import JsonOpt, cli_errors, need_choice, say, table, with_client
from starter.cli_inventory import human_bytes, show_workflow
from starter.client import AbdrClient
from starter.output import emit, emit_json
from starter.plan_files import (
    PlanOptions,
    UsageError,
    format_retention,
    format_schedule,
    format_window,
    load_plan_file,
    parse_network_map,
    plan_from_options,
)
from starter.progress import plan_run_with_progress, with_spinner

plan_app = typer.Typer(help="Backup plans: VMs, repository, schedule, window, retention.", no_args_is_help=True)
point_app = typer.Typer(help="Restore points: one VM at one instant, in a repository.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs: runs of operations, with their Temporal workflows.", no_args_is_help=True)

FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="A BackupPlanSpec as YAML (shorthands allowed).",
                                              exists=True, dir_okay=False)]
VmsOpt = Annotated[list[str] | None, typer.Option("--vm", help="cluster/vm; repeat for more.")]
RepoOpt = Annotated[str | None, typer.Option("--repository", "-r", help="Repository name.")]
ScheduleOpt = Annotated[str | None, typer.Option(
    "--schedule", help="When runs are due: 'every 15m', 'every 2h at :10', 'daily 01:00,13:00', 'every 2d 01:00', "
                       "'weekly mon,thu 02:30', 'monthly 1,15 03:00'.")]
FullOpt = Annotated[str | None, typer.Option(
    "--full-schedule", help="Which due runs are full backups (same syntax; 'none' clears).")]
WindowOpt = Annotated[str | None, typer.Option("--window", help="HH:MM-HH:MM, may cross midnight ('none' clears).")]
DelayOpt = Annotated[str | None, typer.Option("--delay", help="At the window's end: keep-go-on | stop-backup.")]
RetentionOpt = Annotated[str | None, typer.Option("--retention", help="count:N | days:N | forever.")]
TzOpt = Annotated[str | None, typer.Option("--tz", help="IANA time zone of the schedules (default UTC).")]
ConsistencyOpt = Annotated[str | None, typer.Option("--consistency", help="crash | fs.")]
CompressionOpt = Annotated[bool | None, typer.Option("--compression/--no-compression",
                                                     help="zstd: a backup's new chunks, a replication's "
                                                          "transport (default on).")]
ServiceOpt = Annotated[str | None, typer.Option("--service", help="Backup service (default 'default').")]
DescOpt = Annotated[str | None, typer.Option("--description", help="Free text.")]


def _options(vms: list[str] | None, repository: str | None, schedule: str | None, full_schedule: str | None,
             window: str | None, delay: str | None, retention: str | None, tz: str | None, consistency: str | None,
             compression: bool | None, service: str | None, description: str | None) -> PlanOptions:
    return PlanOptions(vms=vms or None, repository=repository, schedule=schedule, full_schedule=full_schedule,
                       window=window, delay=delay, retention=retention, tz=tz, consistency=consistency,
                       compression=compression, service=service, description=description)


def plan_row(p: dict) -> dict:
    s = p["spec"]
    return {"name": s["name"], "status": p["status"], "vms": len(s["vms"]), "repository": s["repository"],
            "schedule": format_schedule(s["schedule"], with_zone=True),
            "full": format_schedule(s["full_schedule"]) if s.get("full_schedule") else "first only",
            "window": format_window(s.get("window")), "retention": format_retention(s["retention"]),
            "last result": p.get("last_result"), "last run": p.get("last_run_at")}


def _said(action: str):  # type: ignore[no-untyped-def]
    def render(spec: dict) -> None:
        say(f"backup plan [bold]{spec['name']}[/bold] {action}: {len(spec['vms'])} VMs -> repository "
                      f"{spec['repository']}, {format_schedule(spec['schedule'], with_zone=True)}, "
                      f"{format_retention(spec['retention'])}")
    return render


@plan_app.command("create")
def plan_create(
    name: Annotated[str | None, typer.Argument(help="Plan name (or the file's).")] = None,
    file: FileOpt = None, vm: VmsOpt = None, repository: RepoOpt = None, schedule: ScheduleOpt = None,
    full_schedule: FullOpt = None, window: WindowOpt = None, delay: DelayOpt = None, retention: RetentionOpt = None,
    tz: TzOpt = None, consistency: ConsistencyOpt = None, compression: CompressionOpt = None,
    service: ServiceOpt = None, description: DescOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a backup plan from options or from -f plan.yaml; its Temporal Schedule starts working."""
    with cli_errors():
        opts = _options(vm, repository, schedule, full_schedule, window, delay, retention, tz, consistency,
                        compression, service, description)
        spec = _spec_for(name, file, opts, None)
        created = with_client(lambda c: c.create_backup_plan(spec))
        emit(created, as_json, _said("created"))


def _spec_for(name: str | None, file: Path | None, opts: PlanOptions, current: dict | None) -> BackupPlanSpec:
    if file is not None:
        if opts.given():
            raise UsageError("give either -f FILE or plan options, not both")
        return load_plan_file(file, name)
    if name is None:
        raise UsageError("name the plan (or give -f plan.yaml)")
    return plan_from_options(name, opts, current)


@plan_app.command("update")
def plan_update(
    name: Annotated[str, typer.Argument(help="Plan name.")],
    file: FileOpt = None, vm: VmsOpt = None, repository: RepoOpt = None, schedule: ScheduleOpt = None,
    full_schedule: FullOpt = None, window: WindowOpt = None, delay: DelayOpt = None, retention: RetentionOpt = None,
    tz: TzOpt = None, consistency: ConsistencyOpt = None, compression: CompressionOpt = None,
    service: ServiceOpt = None, description: DescOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change a plan: -f replaces it whole; options change only what they name."""
    with cli_errors():
        opts = _options(vm, repository, schedule, full_schedule, window, delay, retention, tz, consistency,
                        compression, service, description)
        if file is None and not opts.given():
            raise UsageError("nothing to change: give plan options or -f plan.yaml")
        if file is not None:
            spec = _spec_for(name, file, opts, None)

        async def run(c: AbdrClient) -> dict:
            new = spec if file is not None else plan_from_options(name, opts, (await c.get_backup_plan(name))["spec"])
            return await c.update_backup_plan(new)

        emit(with_client(run), as_json, _said("updated"))


@plan_app.command("list")
def plan_list(as_json: JsonOpt = False) -> None:
    """List backup plans with their state and last result."""
    with cli_errors():
        plans = with_client(lambda c: c.list_backup_plans())
        emit(plans, as_json, lambda rows: table(
            [plan_row(p) for p in rows], ["name", "status", "vms", "repository", "schedule", "window",
                                          "retention", "last result", "last run"], "backup plans"))


@plan_app.command("show")
def plan_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one plan in full."""
    with cli_errors():
        emit(with_client(lambda c: c.get_backup_plan(name)), as_json, _render_plan)


def _render_plan(p: dict) -> None:
    s = p["spec"]
    row = plan_row(p)
    rows = [{"field": k, "value": v} for k, v in row.items() if k != "vms"]
    rows[1:1] = [{"field": "description", "value": s.get("description", "")},
                 {"field": "vms", "value": ", ".join(f"{v['cluster']}/{v['vm']}" for v in s["vms"])},
                 {"field": "service", "value": s["backup_service"]}]
    rows += [{"field": "delay option", "value": s["delay_option"]},
             {"field": "consistency", "value": s["consistency"]},
             {"field": "compression", "value": "on" if s["compression"] else "off"}]
    table(rows, ["field", "value"], f"backup plan {s['name']}")


@plan_app.command("pause")
def plan_pause(name: str, as_json: JsonOpt = False) -> None:
    """Pause a plan: its schedule stops starting runs (manual runs still work)."""
    with cli_errors():
        emit(with_client(lambda c: c.set_backup_plan_paused(name, True)), as_json,
             lambda p: say(f"backup plan [bold]{name}[/bold] {p['status']}"))


@plan_app.command("resume")
def plan_resume(name: str, as_json: JsonOpt = False) -> None:
    """Resume a paused plan."""
    with cli_errors():
        emit(with_client(lambda c: c.set_backup_plan_paused(name, False)), as_json,
             lambda p: say(f"backup plan [bold]{name}[/bold] {p['status']}"))


@plan_app.command("delete")
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
            f"backup plan [bold]{name}[/bold] deleted; {len(o['points'])} restore points "
            f"{'deleted' if o['points_deleted'] else 'kept'}"))


@plan_app.command("run")
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
        emit(out, as_json, _render_run)
        if result.result != RunResult.SUCCESS:
            raise typer.Exit(1)


def _render_run(r: dict) -> None:
    rows = []
    for v in r["vms"]:
        disks = v.get("disks", [])
        kind = v.get("type") or ""
        if kind == "FULL" and v.get("full_reason"):
            kind += f" ({v['full_reason']})"
        rows.append({"vm": f"{v['vm']['cluster']}/{v['vm']['vm']}", "ok": "yes" if v["ok"] else "[red]no[/red]",
                     "point": v.get("point_id"), "type": kind,
                     "read": human_bytes(sum(d["read_bytes"] for d in disks)),
                     "new": human_bytes(sum(d["new_bytes"] for d in disks)), "error": v.get("error")})
    columns = ["vm", "ok", "point", "type", "read", "new"] + (["error"] if any(x["error"] for x in rows) else [])
    table(rows, columns, f"backup plan {r['plan']}")
    colour = "green" if r["result"] == RunResult.SUCCESS else "red"
    say(f"result: [{colour}]{r['result']}[/{colour}] {r.get('skipped_reason', '')}\n  {r['ui']}")


# -- restore points ---------------------------------------------------------------------------

def point_row(p: dict) -> dict:
    return {"id": p["id"], "plan": p.get("plan"), "vm": f"{p['cluster']}/{p['vm']}", "type": p["type"],
            "creation": p["creation"], "state": p.get("state"), "created": p["created_at"],
            "repository": p.get("repository"), "size": human_bytes(p.get("logical_bytes")),
            "stored": human_bytes(p.get("stored_bytes"))}


POINT_COLUMNS = ["id", "plan", "vm", "type", "creation", "state", "created", "repository", "size", "stored"]


@point_app.command("list")
def point_list(
    plan: Annotated[str | None, typer.Option(help="Only this plan's points.")] = None,
    vm: Annotated[str | None, typer.Option(help="Only this VM's points (cluster/vm).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List restore points, oldest first."""
    with cli_errors():
        if vm is not None:
            from starter.plan_files import parse_vm

            parse_vm(vm)
        points = with_client(lambda c: c.list_restore_points(plan=plan, vm=vm))
        emit(points, as_json, lambda rows: table([point_row(p) for p in rows], POINT_COLUMNS, "restore points"))


@point_app.command("show")
def point_show(point_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False) -> None:
    """Show a restore point and the VM configuration it holds."""
    with cli_errors():
        emit(with_client(lambda c: c.get_restore_point(point_id)), as_json, _render_point)


def _render_point(p: dict) -> None:
    table([{"field": k, "value": v} for k, v in point_row(p).items()], ["field", "value"], "restore point")
    cfg = p.get("vm_config") or {}
    disks = ", ".join(f"{d['name']} {human_bytes(d['size_bytes'])}" for d in cfg.get("disks", []))
    nics = ", ".join(f"{n['name']}@{n['network']}" for n in cfg.get("nics", []))
    say(f"VM config: {cfg.get('vcpu')} vCPU, {cfg.get('memory_mib')} MiB; disks {disks or '-'}; "
                  f"NICs {nics or '-'}")


@point_app.command("delete")
def point_delete(point_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False) -> None:
    """Delete a restore point (other points stay restorable: each is independent)."""
    with cli_errors():
        out = with_client(lambda c: c.delete_restore_point(point_id))
        emit(out, as_json, lambda o: say(f"restore point {point_id} deleted"))


# -- restore ------------------------------------------------------------------------------------

def restore(
    point_id: Annotated[str, typer.Argument(metavar="ID", help="The restore point.")],
    mode: Annotated[str, typer.Option("--mode", help="inplace (over the VM) | rebuild (a new VM).")],
    vm: Annotated[str | None, typer.Option(help="inplace: the cluster/vm the point must belong to.")] = None,
    new_name: Annotated[str | None, typer.Option("--new-name", help="rebuild: the new VM's name.")] = None,
    target_cluster: Annotated[str | None, typer.Option("--target-cluster", help="rebuild: default the source's.")]
    = None,
    network_map: Annotated[list[str] | None, typer.Option("--network-map", help="rebuild: src=dst; repeatable.")]
    = None,
    power_on: Annotated[bool, typer.Option("--power-on", help="Power the VM on afterwards.")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a point in place or as a new VM (a Restore workflow)."""
    with cli_errors():
        modes = {m.value.lower(): m for m in RestoreMode}
        if mode.lower() not in modes:
            raise UsageError(f"mode {mode!r} is not one of: inplace, rebuild")
        request = RestoreRequest(point_id=point_id, mode=modes[mode.lower()], vm=vm, new_name=new_name,
                                 target_cluster=target_cluster, power_on=power_on,
                                 network_mapping=[parse_network_map(m) for m in network_map or []])

        async def run(c: AbdrClient) -> tuple[AbdrClient, Any, RestoreResult | None]:
            handle = await c.restore(request)
            if not wait:
                return c, handle, None
            return c, handle, await with_spinner(c.restore_result(handle), f"restoring {point_id}", not as_json)

        client, handle, result = with_client(run)
        if result is None:
            show_workflow(client, handle, as_json, f"restore of {point_id}")
            return
        emit({**result.model_dump(mode="json"), "workflow_id": handle.id, "ui": client.ui_link(handle.id)}, as_json,
             lambda r: say(
                 f"restored {r['point_id']} to [bold]{r['vm']['cluster']}/{r['vm']['vm']}[/bold] ({r['vm_id']}): "
                 f"wrote {human_bytes(r['written_bytes'])} of {human_bytes(r['total_bytes'])}"
                 f"{', powered on' if r['powered_on'] else ''}\n  {r['ui']}"))


# -- jobs -------------------------------------------------------------------------------------

@job_app.command("list")
def job_list(
    plan: Annotated[str | None, typer.Option(help="Only this plan's jobs.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Newest N.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List recent jobs, newest first (each links to its workflow in the Web UI)."""
    with cli_errors():
        jobs = with_client(lambda c: c.list_jobs(plan=plan, limit=limit))
        emit(jobs, as_json, lambda rows: table(
            rows, ["workflow_id", "operation", "status", "plan", "vm", "started_at", "finished_at"], "jobs"))


@job_app.command("show")
def job_show(workflow_id: Annotated[str, typer.Argument(metavar="WORKFLOW_ID")], as_json: JsonOpt = False) -> None:
    """Show a job's workflow: status, per-VM results or progress, and its Web UI link."""
    with cli_errors():
        emit(with_client(lambda c: c.describe_job(workflow_id)), as_json, _render_job)


def _render_job(j: dict) -> None:
    say(f"[bold]{j['workflow_id']}[/bold] ({j['type']}) {j['status']}\n"
                  f"  started {j['started_at']}" + (f", closed {j['closed_at']}" if j.get("closed_at") else "")
                  + f"\n  {j['ui']}")
    result = j.get("result")
    progress = j.get("progress")
    if progress:
        say(f"  progress: {progress['vms_done']}/{progress['vms_total']} VMs")
    vms = result.get("vms") if isinstance(result, dict) else (progress or {}).get("results")
    if vms:
        _render_run({"plan": (result or {}).get("plan", j["workflow_id"]), "vms": vms,
                     "result": (result or {}).get("result", j["status"]),
                     "skipped_reason": (result or {}).get("skipped_reason", ""), "ui": j["ui"]})
    elif result is not None:
        emit_json(result)
