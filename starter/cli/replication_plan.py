"""`abdr replication-plan`: VMs replicated to another cluster or site on a schedule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from models.admin import ReplicationPlanView
from models.plans import RunResult
from models.replication import ReplicationPlanSpec
from models.replication_jobs import ReplicationRunResult
from starter.cli.common import cli_errors, with_client
from starter.cli.grammar import (
    format_ip_map,
    format_naming,
    format_retention,
    format_schedule,
    format_window,
)
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
from starter.cli.plan_files import load_replication_plan_file
from starter.cli.plan_options import (
    PlanKind,
    ReplicationOptions,
    add_pause_commands,
    add_save_commands,
    replication_plan_from_options,
    save_plan,
)
from starter.cli.progress import replication_run_with_progress
from starter.cli.render import emit, human_bytes, say, show_workflow, table, when

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

    from starter.client import AbdrClient

app = typer.Typer(help="Replication plans: VMs replicated to another cluster or site on a schedule.",
                  no_args_is_help=True)

FileOpt = Annotated[Path | None, typer.Option(
    "--file", "-f", help="A ReplicationPlanSpec as YAML (shorthands allowed).", exists=True, dir_okay=False)]
KindOpt = Annotated[str | None, typer.Option("--kind", help="intra | cross (default: from the sites).")]
SourceSiteOpt = Annotated[str | None, typer.Option("--source-site", help="Site of the source cluster.")]
SourceClusterOpt = Annotated[str | None, typer.Option("--source-cluster", help="Default: the --vm cluster.")]
TargetSiteOpt = Annotated[str | None, typer.Option("--target-site", help="Site of the target cluster.")]
TargetClusterOpt = Annotated[str | None, typer.Option("--target-cluster", help="Where the replicas live.")]
NetMapOpt = Annotated[list[str] | None, typer.Option(
    "--network-map", help="SRC=DST: the replica's NICs on SRC go to DST; repeatable ('none' clears).")]
IpMapOpt = Annotated[list[str] | None, typer.Option(
    "--ip-map", help="SRC=DST\\[/PREFIX]\\[@GATEWAY]: the replica's address; repeatable ('none' clears).")]
MacOpt = Annotated[bool | None, typer.Option("--keep-mac/--new-mac",
                                             help="Replica NICs keep the source MACs (default) or get new ones.")]
ThinOpt = Annotated[bool | None, typer.Option("--thin/--thick", help="Replica disks thin (default) or thick "
                                                                    "(their whole size reserved when created).")]
AbortOpt = Annotated[bool | None, typer.Option(
    "--abort-at-window-end/--finish-after-window",
    help="A scheduled run still going when the window closes is stopped, or finishes (default).")]
NamingOpt = Annotated[str | None, typer.Option(
    "--naming", help="Replica names: origin | prefix:TEXT | suffix:TEXT (default suffix:-replica).")]


def plan_row(p: ReplicationPlanView) -> dict:
    s = p.spec
    return {"name": s.name, "status": p.status, "kind": s.kind,
            "source": f"{s.source_site}/{s.source_cluster}",
            "target": f"{s.target_site}/{s.target_cluster}",
            "vms": len(s.vms), "schedule": format_schedule(s.schedule, with_zone=True),
            "window": format_window(s.window), "retention": format_retention(s.retention),
            "last result": p.last_result, "last run": when(p.last_run_at)}


def _said(action: str) -> Callable[[ReplicationPlanSpec], None]:
    def render(spec: ReplicationPlanSpec) -> None:
        say(f"replication plan [bold]{spec.name}[/bold] {action}: {len(spec.vms)} VMs "
            f"{spec.source_site}/{spec.source_cluster} -> {spec.target_site}/{spec.target_cluster} "
            f"({spec.kind}), {format_schedule(spec.schedule, with_zone=True)}, "
            f"{format_retention(spec.retention)}")
    return render


async def _current(c: AbdrClient, name: str) -> dict:
    return (await c.get_replication_plan(name)).spec.model_dump(mode="json")


REPLICATION = PlanKind("replication plan", load_replication_plan_file, replication_plan_from_options, _current,
                       lambda c, spec: c.create_replication_plan(spec),
                       lambda c, spec: c.update_replication_plan(spec),
                       lambda c, name, paused: c.set_replication_plan_paused(name, paused))


def _save(update: bool) -> Callable[..., None]:
    """`create` (update=False) and `update`: one set of options, one way to a saved plan."""

    def save(
        name: Annotated[str | None, typer.Argument(help="Plan name (or the file's).")] = None,
        file: FileOpt = None, kind: KindOpt = None, source_site: SourceSiteOpt = None,
        source_cluster: SourceClusterOpt = None, target_site: TargetSiteOpt = None,
        target_cluster: TargetClusterOpt = None, vm: VmsOpt = None, schedule: ScheduleOpt = None,
        window: WindowOpt = None, retention: RetentionOpt = None, tz: TzOpt = None, network_map: NetMapOpt = None,
        ip_map: IpMapOpt = None, keep_mac: MacOpt = None, naming: NamingOpt = None, compression: CompressionOpt = None,
        consistency: ConsistencyOpt = None, description: DescOpt = None, thin: ThinOpt = None,
        abort_at_window_end: AbortOpt = None, as_json: JsonOpt = False,
    ) -> None:
        with cli_errors():
            opts = ReplicationOptions(
                kind=kind, source_site=source_site, source_cluster=source_cluster, target_site=target_site,
                target_cluster=target_cluster, vms=vm or None, schedule=schedule, window=window, retention=retention,
                tz=tz, network_maps=network_map or None, ip_maps=ip_map or None, keep_mac=keep_mac, naming=naming,
                compression=compression, consistency=consistency, description=description, thin_provisioning=thin,
                abort_window_unfinished=abort_at_window_end)
            emit(save_plan(REPLICATION, update, name, file, opts), as_json, _said("updated" if update else "created"))

    return save


add_save_commands(app, REPLICATION, _save)
add_pause_commands(app, REPLICATION)


@app.command("list")
def plan_list(as_json: JsonOpt = False) -> None:
    """List replication plans with their state and last result."""
    with cli_errors():
        plans = with_client(lambda c: c.list_replication_plans())
        emit(plans, as_json, lambda rows: table(
            [plan_row(p) for p in rows], ["name", "status", "kind", "source", "target", "vms", "schedule", "window",
                                          "retention", "last result", "last run"], "replication plans"))


@app.command("show")
def plan_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one replication plan in full."""
    with cli_errors():
        emit(with_client(lambda c: c.get_replication_plan(name)), as_json, _render_plan)


def _render_plan(p: ReplicationPlanView) -> None:
    s = p.spec
    rows = [{"field": k, "value": v} for k, v in plan_row(p).items() if k != "vms"]
    rows[1:1] = [{"field": "description", "value": s.description},
                 {"field": "vms", "value": ", ".join(f"{v.cluster}/{v.vm}" for v in s.vms)}]
    rows += [{"field": "naming", "value": format_naming(s.naming)},
             {"field": "network map", "value": ", ".join(f"{m.source}={m.target}" for m in s.network_mapping)},
             {"field": "ip map", "value": ", ".join(format_ip_map(m) for m in s.ip_mapping)},
             {"field": "MAC addresses", "value": "kept" if s.keep_mac else "new"},
             {"field": "consistency", "value": s.consistency},
             {"field": "compression", "value": "on" if s.compression else "off"},
             {"field": "disks", "value": "thin" if s.thin_provisioning else "thick"},
             {"field": "at window end", "value": "stop" if s.abort_window_unfinished else "finish"}]
    table(rows, ["field", "value"], f"replication plan {s.name}")


@app.command("delete")
def plan_delete(name: str, as_json: JsonOpt = False) -> None:
    """Delete a plan and its schedule (the replica VMs stay on the target cluster)."""
    with cli_errors():
        emit(with_client(lambda c: c.delete_replication_plan(name)), as_json,
             lambda o: say(f"replication plan [bold]{name}[/bold] deleted; its replica VMs are left as they are"))


@app.command("run")
def plan_run(
    name: str,
    wait: Annotated[bool, typer.Option("--wait", help="Show progress, print per-VM results; "
                                                      "exit 1 unless SUCCESS.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replicate now (a manual run: its replica points are MANUAL)."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, WorkflowHandle, ReplicationRunResult | None]:
            vms = [v.vm for v in (await c.get_replication_plan(name)).spec.vms]
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
