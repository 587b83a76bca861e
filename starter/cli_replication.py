"""`abdr replication-plan|replica|failover|failover-test|failback|permanent-failover`:
replicas of VMs on another cluster or site, and the disaster-recovery operations on them.

`failover` is both a command and a group: `abdr failover PLAN VM` fails over and
`abdr failover undo PLAN VM` undoes it (see `FailoverGroup`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from typer.core import TyperGroup

from models.plans import RunResult
from models.replication_jobs import DrOperationResult, ReplicationRunResult
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    FailoverTestRequest,
    PermanentFailoverRequest,
    UndoFailoverRequest,
)
from starter.cli_backup import CompressionOpt, ConsistencyOpt, DescOpt, RetentionOpt, ScheduleOpt, TzOpt, VmsOpt
from starter.cli_common import JsonOpt, cli_errors, say, table, with_client
from starter.cli_inventory import human_bytes, show_workflow
from starter.client import AbdrClient, AbdrError
from starter.output import emit, err_console
from starter.plan_files import (
    ReplicationOptions,
    UsageError,
    format_ip_map,
    format_naming,
    format_retention,
    format_schedule,
    format_window,
    load_replication_plan_file,
    parse_duration,
    parse_shutdown,
    replication_plan_from_options,
)
from starter.progress import POLL_S, with_spinner
from workflows.drill import drill_id
from workflows.replication import replicate_id


class FailoverGroup(TyperGroup):
    """A group that is also a command. `abdr failover undo PLAN VM` runs the `undo`
    sub-command; anything else (`abdr failover PLAN VM [options]`, `abdr failover --help`)
    runs the hidden default command as `abdr failover` itself, so its usage, help and
    error hints read `abdr failover [OPTIONS] PLAN VM`. A plan literally named `undo`
    is reached with `abdr failover -- undo VM`."""

    DEFAULT = "default"

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        sub = self.commands.get(args[0]) if args else None
        if sub is None or sub.hidden:
            return self.commands[self.DEFAULT].make_context(info_name, args, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


plan_app = typer.Typer(help="Replication plans: VMs replicated to another cluster or site on a schedule.",
                       no_args_is_help=True)
replica_app = typer.Typer(help="Replicas: each replicated VM's copy, its state and RPO lag.", no_args_is_help=True)
failover_app = typer.Typer(cls=FailoverGroup, help="Fail a replicated VM over to its replica "
                                                   "(`abdr failover PLAN VM`), or undo it (`abdr failover undo`).")
test_app = typer.Typer(help="Failover tests: a copy of a replica at a point, started on an isolated network.",
                       no_args_is_help=True)

FileOpt = Annotated[Path | None, typer.Option(
    "--file", "-f", help="A ReplicationPlanSpec as YAML (shorthands allowed).", exists=True, dir_okay=False)]
KindOpt = Annotated[str | None, typer.Option("--kind", help="intra | cross (default: from the sites).")]
SourceSiteOpt = Annotated[str | None, typer.Option("--source-site", help="Site of the source cluster.")]
SourceClusterOpt = Annotated[str | None, typer.Option("--source-cluster", help="Default: the --vm cluster.")]
TargetSiteOpt = Annotated[str | None, typer.Option("--target-site", help="Site of the target cluster.")]
TargetClusterOpt = Annotated[str | None, typer.Option("--target-cluster", help="Where the replicas live.")]
WindowOpt = Annotated[str | None, typer.Option("--window", help="HH:MM-HH:MM, may cross midnight ('none' clears).")]
NetMapOpt = Annotated[list[str] | None, typer.Option(
    "--network-map", help="SRC=DST: the replica's NICs on SRC go to DST; repeatable ('none' clears).")]
IpMapOpt = Annotated[list[str] | None, typer.Option(
    "--ip-map", help="SRC=DST[/PREFIX][@GATEWAY]: the replica's address; repeatable ('none' clears).")]
MacOpt = Annotated[bool | None, typer.Option("--keep-mac/--new-mac",
                                             help="Replica NICs keep the source MACs (default) or get new ones.")]
ThinOpt = Annotated[bool | None, typer.Option("--thin/--thick", help="Replica disks thin (default) or thick "
                                                                    "(their whole size reserved when created).")]
AbortOpt = Annotated[bool | None, typer.Option(
    "--abort-at-window-end/--finish-after-window",
    help="A scheduled run still going when the window closes is stopped, or finishes (default).")]
NamingOpt = Annotated[str | None, typer.Option(
    "--naming", help="Replica names: origin | prefix:TEXT | suffix:TEXT (default suffix:-replica).")]
PlanArg = Annotated[str, typer.Argument(metavar="PLAN", help="The replication plan.")]
VmArg = Annotated[str, typer.Argument(metavar="VM", help="The source VM's name (in the plan).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the result (exit 1 if the operation fails).")]
PointOpt = Annotated[str, typer.Option("--restore-point", help="latest | a replica point id | now (final sync "
                                                               "first; needs --source-shutdown).")]
PowerOnOpt = Annotated[bool, typer.Option("--power-on/--no-power-on", help="Start the VM afterwards.")]


def _options(kind: str | None, source_site: str | None, source_cluster: str | None, target_site: str | None,
             target_cluster: str | None, vms: list[str] | None, schedule: str | None, window: str | None,
             retention: str | None, tz: str | None, network_maps: list[str] | None, ip_maps: list[str] | None,
             keep_mac: bool | None, naming: str | None, compression: bool | None, consistency: str | None,
             description: str | None, thin: bool | None = None, abort: bool | None = None) -> ReplicationOptions:
    return ReplicationOptions(kind=kind, source_site=source_site, source_cluster=source_cluster,
                              target_site=target_site, target_cluster=target_cluster, vms=vms or None,
                              schedule=schedule, window=window, retention=retention, tz=tz,
                              network_maps=network_maps or None, ip_maps=ip_maps or None, keep_mac=keep_mac,
                              naming=naming, compression=compression, consistency=consistency,
                              description=description, thin_provisioning=thin, abort_window_unfinished=abort)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(seconds, 0))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    at = datetime.fromisoformat(iso)
    return (at.astimezone(timezone.utc) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M:%SZ")


# -- replication plans ------------------------------------------------------------------------

def plan_row(p: dict) -> dict:
    s = p["spec"]
    return {"name": s["name"], "status": p["status"], "kind": s["kind"],
            "source": f"{s['source_site']}/{s['source_cluster']}",
            "target": f"{s['target_site']}/{s['target_cluster']}",
            "vms": len(s["vms"]), "schedule": format_schedule(s["schedule"], with_zone=True),
            "window": format_window(s.get("window")), "retention": format_retention(s["retention"]),
            "last result": p.get("last_result"), "last run": p.get("last_run_at")}


def _said(action: str) -> Callable[[dict], None]:
    def render(spec: dict) -> None:
        say(f"replication plan [bold]{spec['name']}[/bold] {action}: {len(spec['vms'])} VMs "
            f"{spec['source_site']}/{spec['source_cluster']} -> {spec['target_site']}/{spec['target_cluster']} "
            f"({spec['kind']}), {format_schedule(spec['schedule'], with_zone=True)}, "
            f"{format_retention(spec['retention'])}")
    return render


def _spec_for(name: str | None, file: Path | None, opts: ReplicationOptions) -> Any:
    if file is not None:
        if opts.given():
            raise UsageError("give either -f FILE or plan options, not both")
        return load_replication_plan_file(file, name)
    if name is None:
        raise UsageError("name the plan (or give -f plan.yaml)")
    return replication_plan_from_options(name, opts)


@plan_app.command("create")
def plan_create(
    name: Annotated[str | None, typer.Argument(help="Plan name (or the file's).")] = None,
    file: FileOpt = None, kind: KindOpt = None, source_site: SourceSiteOpt = None,
    source_cluster: SourceClusterOpt = None, target_site: TargetSiteOpt = None, target_cluster: TargetClusterOpt = None,
    vm: VmsOpt = None, schedule: ScheduleOpt = None, window: WindowOpt = None, retention: RetentionOpt = None,
    tz: TzOpt = None, network_map: NetMapOpt = None, ip_map: IpMapOpt = None, keep_mac: MacOpt = None,
    naming: NamingOpt = None, compression: CompressionOpt = None, consistency: ConsistencyOpt = None,
    description: DescOpt = None, thin: ThinOpt = None, abort_at_window_end: AbortOpt = None, as_json: JsonOpt = False,
) -> None:
    """Create a replication plan from options or from -f plan.yaml; its Temporal Schedule starts working."""
    with cli_errors():
        opts = _options(kind, source_site, source_cluster, target_site, target_cluster, vm, schedule, window,
                        retention, tz, network_map, ip_map, keep_mac, naming, compression, consistency, description,
                        thin, abort_at_window_end)
        spec = _spec_for(name, file, opts)
        emit(with_client(lambda c: c.create_replication_plan(spec)), as_json, _said("created"))


@plan_app.command("update")
def plan_update(
    name: Annotated[str, typer.Argument(help="Plan name.")],
    file: FileOpt = None, kind: KindOpt = None, source_site: SourceSiteOpt = None,
    source_cluster: SourceClusterOpt = None, target_site: TargetSiteOpt = None, target_cluster: TargetClusterOpt = None,
    vm: VmsOpt = None, schedule: ScheduleOpt = None, window: WindowOpt = None, retention: RetentionOpt = None,
    tz: TzOpt = None, network_map: NetMapOpt = None, ip_map: IpMapOpt = None, keep_mac: MacOpt = None,
    naming: NamingOpt = None, compression: CompressionOpt = None, consistency: ConsistencyOpt = None,
    description: DescOpt = None, thin: ThinOpt = None, abort_at_window_end: AbortOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change a plan: -f replaces it whole; options change only what they name."""
    with cli_errors():
        opts = _options(kind, source_site, source_cluster, target_site, target_cluster, vm, schedule, window,
                        retention, tz, network_map, ip_map, keep_mac, naming, compression, consistency, description,
                        thin, abort_at_window_end)
        if file is None and not opts.given():
            raise UsageError("nothing to change: give plan options or -f plan.yaml")
        spec = _spec_for(name, file, opts) if file is not None else None
        opts.check()  # bad values are reported before anything is contacted

        async def run(c: AbdrClient) -> dict:
            new = spec or replication_plan_from_options(name, opts, (await c.get_replication_plan(name))["spec"])
            return await c.update_replication_plan(new)

        emit(with_client(run), as_json, _said("updated"))


@plan_app.command("list")
def plan_list(as_json: JsonOpt = False) -> None:
    """List replication plans with their state and last result."""
    with cli_errors():
        plans = with_client(lambda c: c.list_replication_plans())
        emit(plans, as_json, lambda rows: table(
            [plan_row(p) for p in rows], ["name", "status", "kind", "source", "target", "vms", "schedule", "window",
                                          "retention", "last result", "last run"], "replication plans"))


@plan_app.command("show")
def plan_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one replication plan in full."""
    with cli_errors():
        emit(with_client(lambda c: c.get_replication_plan(name)), as_json, _render_plan)


def _render_plan(p: dict) -> None:
    s = p["spec"]
    rows = [{"field": k, "value": v} for k, v in plan_row(p).items() if k != "vms"]
    rows[1:1] = [{"field": "description", "value": s.get("description", "")},
                 {"field": "vms", "value": ", ".join(f"{v['cluster']}/{v['vm']}" for v in s["vms"])}]
    rows += [{"field": "naming", "value": format_naming(s["naming"])},
             {"field": "network map", "value": ", ".join(f"{m['source']}={m['target']}" for m in s["network_mapping"])},
             {"field": "ip map", "value": ", ".join(format_ip_map(m) for m in s["ip_mapping"])},
             {"field": "MAC addresses", "value": "kept" if s["keep_mac"] else "new"},
             {"field": "consistency", "value": s["consistency"]},
             {"field": "compression", "value": "on" if s["compression"] else "off"},
             {"field": "disks", "value": "thin" if s.get("thin_provisioning", True) else "thick"},
             {"field": "at window end", "value": "stop" if s.get("abort_window_unfinished") else "finish"}]
    table(rows, ["field", "value"], f"replication plan {s['name']}")


@plan_app.command("pause")
def plan_pause(name: str, as_json: JsonOpt = False) -> None:
    """Pause a plan: its schedule stops starting runs (manual runs still work)."""
    with cli_errors():
        emit(with_client(lambda c: c.set_replication_plan_paused(name, True)), as_json,
             lambda p: say(f"replication plan [bold]{name}[/bold] {p['status']}"))


@plan_app.command("resume")
def plan_resume(name: str, as_json: JsonOpt = False) -> None:
    """Resume a paused plan."""
    with cli_errors():
        emit(with_client(lambda c: c.set_replication_plan_paused(name, False)), as_json,
             lambda p: say(f"replication plan [bold]{name}[/bold] {p['status']}"))


@plan_app.command("delete")
def plan_delete(name: str, as_json: JsonOpt = False) -> None:
    """Delete a plan and its schedule (the replica VMs stay on the target cluster)."""
    with cli_errors():
        emit(with_client(lambda c: c.delete_replication_plan(name)), as_json,
             lambda o: say(f"replication plan [bold]{name}[/bold] deleted; its replica VMs are left as they are"))


@plan_app.command("run")
def plan_run(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress, print per-VM results; "
                                                      "exit 1 unless SUCCESS.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replicate now (a manual run: its replica points are MANUAL)."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, WorkflowHandle, ReplicationRunResult | None]:
            vms = [v["vm"] for v in (await c.get_replication_plan(name))["spec"]["vms"]]
            handle = await c.run_replication_plan(name)
            if not wait:
                return c, handle, None
            return c, handle, await replication_run_with_progress(c, handle, name, vms, show=not as_json)

        client, handle, result = with_client(run)
        if result is None:
            show_workflow(client, handle, as_json, f"replication plan {name}")
            return
        out = {**result.model_dump(mode="json"), "workflow_id": handle.id, "ui": client.ui_link(handle.id)}
        emit(out, as_json, _render_run)
        if result.result != RunResult.SUCCESS:
            raise typer.Exit(1)


async def replication_run_with_progress(client: AbdrClient, handle: WorkflowHandle, plan: str, vms: list[str],
                                        show: bool) -> ReplicationRunResult:
    """Await a ReplicationPlanRun's result; while it runs, show VMs done / total (a VM is
    done when its Replicate child of this run has closed)."""
    result = asyncio.ensure_future(client.result(handle))
    if not show:
        return await result
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("VMs"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task(f"replication plan {plan}", total=len(vms) or None)
        while not result.done():
            done = await asyncio.gather(*(_child_closed(client, handle, plan, vm) for vm in vms))
            bar.update(task, completed=sum(done))
            await asyncio.wait({result}, timeout=POLL_S)
        if not result.exception():
            n = len(result.result().vms)
            bar.update(task, total=max(n, 1), completed=n)
    return await result


async def _child_closed(client: AbdrClient, parent: WorkflowHandle, plan: str, vm: str) -> bool:
    try:
        d = await asyncio.wait_for(client.client.get_workflow_handle(replicate_id(plan, vm)).describe(), timeout=5)
    except Exception:  # not started yet: the next poll will tell
        return False
    return (d.parent_id == parent.id and d.parent_run_id == parent.result_run_id
            and d.status not in (None, WorkflowExecutionStatus.RUNNING))


def _render_run(r: dict) -> None:
    def transfer(v: dict) -> str:
        return ("seed (full)" if v["seeded"] else "incremental") if v["ok"] else ""

    rows = [{"vm": f"{v['vm']['cluster']}/{v['vm']['vm']}", "ok": "yes" if v["ok"] else "[red]no[/red]",
             "point": v.get("point_id"), "transfer": transfer(v),
             "moved": human_bytes(v["moved_bytes"]), "wire": human_bytes(v["wire_bytes"]),
             "disk": human_bytes(v["disk_bytes"]), "error": v.get("error")} for v in r["vms"]]
    columns = ["vm", "ok", "point", "transfer", "moved", "wire", "disk"] + (
        ["error"] if any(x["error"] for x in rows) else [])
    table(rows, columns, f"replication plan {r['plan']}")
    colour = "green" if r["result"] == RunResult.SUCCESS else "red"
    say(f"result: [{colour}]{r['result']}[/{colour}] {r.get('skipped_reason', '')}\n"
        f"  workflow {r['workflow_id']}\n  {r['ui']}")


# -- replicas ------------------------------------------------------------------------------

def replica_row(o: dict) -> dict:
    return {"plan": o["plan"], "vm": f"{o['source']['cluster']}/{o['source']['vm']}",
            "replica": f"{o['replica']['cluster']}/{o['replica']['vm']}", "state": o["state"],
            "newest point": o.get("replica_point"), "point time": _when(o.get("last_point_at")),
            "RPO lag": human_duration(o.get("rpo_lag_s")) or "no point yet"}


@replica_app.command("list")
def replica_list(plan: Annotated[str | None, typer.Option(help="Only this plan's replicas.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List replicas: state, newest point and its time, RPO lag (time since that point)."""
    with cli_errors():
        replicas = with_client(lambda c: c.list_replicas(plan))
        emit(replicas, as_json, lambda rows: table(
            [replica_row(o) for o in rows], ["plan", "vm", "replica", "state", "newest point", "point time",
                                             "RPO lag"], "replicas"))


@replica_app.command("history")
def replica_history(plan: Annotated[str, typer.Argument(help="The replication plan.")],
                    vm: Annotated[str, typer.Argument(help="The protected (source) VM's name.")],
                    limit: Annotated[int, typer.Option(min=1, max=1000, help="Entries per page.")] = 50,
                    before: Annotated[int | None, typer.Option(help="Page on: the `next` a page printed.")] = None,
                    as_json: JsonOpt = False) -> None:
    """A replica's state changes, newest first, a page at a time (the catalog keeps them all)."""
    with cli_errors():
        page = with_client(lambda c: c.replica_history(plan, vm, limit, before))
        emit(page, as_json, lambda p: table(
            [{"at": _when(e["at"]), "from": e["from_state"], "to": e["to_state"], "by": e.get("owner") or "",
              "reason": e["reason"]} for e in p["entries"]], ["at", "from", "to", "by", "reason"],
            f"history of {plan}/{vm}: {len(p['entries'])} of {p['total']}"
            + (f" (next: --before {p['next_before']})" if p["next_before"] else "")))


# -- disaster recovery ---------------------------------------------------------------------

async def _outcome(client: AbdrClient, handle: WorkflowHandle) -> DrOperationResult:
    """The operation's result; a failure names the workflow to look at."""
    try:
        return await client.result(handle)
    except AbdrError as e:
        raise AbdrError(f"{e} (workflow {handle.id}: {client.ui_link(handle.id)})") from None


def run_dr(start: Callable[[AbdrClient], Awaitable[WorkflowHandle]], wait: bool, as_json: bool, what: str,
           render: Callable[[dict], str]) -> None:
    """Start a DR workflow; print its id and Web UI link, or with --wait its result."""
    async def run(c: AbdrClient) -> tuple[AbdrClient, WorkflowHandle, DrOperationResult | None]:
        handle = await start(c)
        if not wait:
            return c, handle, None
        return c, handle, await with_spinner(_outcome(c, handle), f"{what} (workflow {handle.id})", not as_json)

    client, handle, result = with_client(run)
    if result is None:
        show_workflow(client, handle, as_json, what)
        return
    out = {**result.model_dump(mode="json"), "workflow_id": handle.id, "ui": client.ui_link(handle.id)}
    emit(out, as_json, lambda r: say(f"{render(r)}\n  workflow [bold]{r['workflow_id']}[/bold]\n  {r['ui']}"))


def _said_failover(r: dict) -> str:
    d = r["details"]
    extra = f", final sync moved {human_bytes(d['final_sync_bytes'])}" if "final_sync_bytes" in d else ""
    return (f"[bold]{r['plan']}/{r['vm']}[/bold] failed over: the replica runs point {r['point_id']} "
            f"(state {r['state']}); source {d.get('source', '?')}{extra}")


@failover_app.command(FailoverGroup.DEFAULT, hidden=True, no_args_is_help=True)
def failover(
    plan: PlanArg, vm: VmArg,
    restore_point: PointOpt = "latest",
    source_shutdown: Annotated[str, typer.Option(
        "--source-shutdown", help="none | shutdown | poweroff | shutdown-with-poweroff: how the source is "
                                  "stopped first (none: it must already be stopped or unreachable).")] = "none",
    shutdown_timeout: Annotated[str, typer.Option("--shutdown-timeout", help="Seconds (or 5m, 1h) a guest "
                                                                             "shutdown may take.")] = "300",
    power_on: PowerOnOpt = True, wait: WaitOpt = False, as_json: JsonOpt = False,
) -> None:
    """Fail VM over to its replica at a point (undo: `abdr failover undo PLAN VM`).

    The source is fenced (--source-shutdown) or must be stopped or unreachable; the
    replica rolls back to the point and starts. Return with `abdr failback PLAN VM`."""
    with cli_errors():
        req = FailoverRequest(plan=plan, vm=vm, point=restore_point, source_shutdown=parse_shutdown(source_shutdown),
                              shutdown_timeout_s=parse_duration(shutdown_timeout, "--shutdown-timeout"),
                              power_on=power_on)
        run_dr(lambda c: c.failover(req), wait, as_json, f"failover of {plan}/{vm}", _said_failover)


@failover_app.command("undo", no_args_is_help=True)
def failover_undo(plan: PlanArg, vm: VmArg, wait: WaitOpt = False, as_json: JsonOpt = False) -> None:
    """Undo a failover: the replica returns to the newest replicated point.

    The replica stops; what it did since the failover is discarded; replication resumes."""
    with cli_errors():
        req = UndoFailoverRequest(plan=plan, vm=vm)
        run_dr(lambda c: c.undo_failover(req), wait, as_json, f"undo of the failover of {plan}/{vm}",
               lambda r: f"failover of [bold]{r['plan']}/{r['vm']}[/bold] undone: the replica is back at point "
                         f"{r['point_id']} (state {r['state']})")


def failback(plan: PlanArg, vm: VmArg, power_on: PowerOnOpt = True, wait: WaitOpt = False,
             as_json: JsonOpt = False) -> None:
    """Return a failed-over VM to its original; only what changed moves back.

    A pre-sync while the replica serves, then a final sync with it stopped; then the
    original starts and replication resumes."""
    with cli_errors():
        req = FailbackRequest(plan=plan, vm=vm, power_on=power_on)

        def render(r: dict) -> str:
            share = f" ({100 * r['moved_bytes'] / r['disk_bytes']:.1f}%)" if r["disk_bytes"] else ""
            return (f"[bold]{r['plan']}/{r['vm']}[/bold] failed back: moved {human_bytes(r['moved_bytes'])} of "
                    f"{human_bytes(r['disk_bytes'])} of disk{share}; point {r['point_id']}, state {r['state']}")

        run_dr(lambda c: c.failback(req), wait, as_json, f"failback of {plan}/{vm}", render)


def permanent_failover(
    plan: PlanArg, vm: VmArg,
    reprotect: Annotated[bool, typer.Option("--reprotect", help="Replicate the replica back to the original's "
                                                                "cluster in a new reverse plan.")] = False,
    wait: WaitOpt = False, as_json: JsonOpt = False,
) -> None:
    """Make a failover final: the replica becomes the VM and leaves the plan."""
    with cli_errors():
        req = PermanentFailoverRequest(plan=plan, vm=vm, reprotect=reprotect)

        def render(r: dict) -> str:
            d = r["details"]
            out = f"[bold]{r['plan']}/{r['vm']}[/bold] permanently failed over (state {r['state']})"
            if d.get("reverse_plan"):
                out += (f"; reverse plan {d['reverse_plan']} seeded: moved {human_bytes(d.get('seed_moved_bytes'))} "
                        f"of {human_bytes(d.get('disk_bytes'))}")
            return out

        run_dr(lambda c: c.permanent_failover(req), wait, as_json, f"permanent failover of {plan}/{vm}", render)


# -- failover tests -------------------------------------------------------------------------

@test_app.command("start", no_args_is_help=True)
def test_start(
    plan: PlanArg, vm: VmArg,
    restore_point: Annotated[str, typer.Option("--restore-point", help="latest | a replica point id.")] = "latest",
    test_network: Annotated[str, typer.Option("--test-network", help="The isolated network of the copy.")]
    = "abdr-isolated",
    cleanup_after: Annotated[str, typer.Option("--cleanup-after", help="Seconds (or 30m, 2h, 1d) before the copy "
                                                                       "is removed unless cleaned up earlier.")]
    = "3600",
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the copy runs and print its health check.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a copy of VM's replica at a point on an isolated network; replication goes on."""
    with cli_errors():
        req = FailoverTestRequest(plan=plan, vm=vm, point=restore_point, test_network=test_network,
                                  cleanup_after_s=parse_duration(cleanup_after, "--cleanup-after"))

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
            f"{e.get('network', '?')}: {e.get('power_state', '?')}, disks match the point: "
            f"{'yes' if e.get('disks_match_point') else '[red]no[/red]'}\n"
            f"  workflow [bold]{e['workflow_id']}[/bold]\n  {e['ui']}\n"
            f"  clean up with: abdr failover-test cleanup {plan} {vm}"))
        if not (evidence.get("power_state") == "RUNNING" and evidence.get("disks_match_point")):
            raise typer.Exit(1)


async def _evidence(client: AbdrClient, handle: WorkflowHandle) -> dict:
    """The drill's health check, once it has one; a drill that ended first reports why."""
    while True:
        d = await handle.describe()
        if d.status != WorkflowExecutionStatus.RUNNING:
            result = await _outcome(client, handle)
            return result.details
        try:
            found = await asyncio.wait_for(handle.query("evidence"), timeout=5)
        except Exception:  # between tasks: ask again
            found = None
        if found:
            return found
        await asyncio.sleep(POLL_S)


@test_app.command("cleanup", no_args_is_help=True)
def test_cleanup(plan: PlanArg, vm: VmArg, as_json: JsonOpt = False) -> None:
    """End a failover test: the copy is deleted; prints what the test found."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, DrOperationResult]:
            try:
                work = c.cleanup_failover_test(plan, vm)
                return c, await with_spinner(work, f"cleaning up the failover test of {plan}/{vm}", not as_json)
            except RPCError as e:
                if e.status == RPCStatusCode.NOT_FOUND:
                    raise AbdrError(f"no failover test of {plan}/{vm} is running") from None
                raise

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
