"""`abdr failover PLAN VM` and `abdr failover undo PLAN VM`: a replicated VM fails over
to its replica at a point, or returns to the newest replicated point.

`failover` is both a command and a group (see `FailoverGroup`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from models.requests import FailoverRequest, UndoFailoverRequest
from starter.cli.common import cli_errors
from starter.cli.dr import run_dr
from starter.cli.grammar import parse_duration, parse_shutdown
from starter.cli.options import JsonOpt, PlanArg, PowerOnOpt, VmArg, WaitOpt
from starter.cli.render import human_bytes


class FailoverGroup(TyperGroup):
    """A group that is also a command. `abdr failover undo PLAN VM` runs the `undo`
    sub-command; anything else (`abdr failover PLAN VM [options]`, `abdr failover --help`)
    runs the hidden default command as `abdr failover` itself, so its usage, help and
    error hints read `abdr failover [OPTIONS] PLAN VM`. A plan literally named `undo`
    is reached with `abdr failover -- undo VM`."""

    DEFAULT = "default"

    # Typer vendors its click privately: its Context type is not ours to name.
    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        sub = self.commands.get(args[0]) if args else None
        if sub is None or sub.hidden:
            return self.commands[self.DEFAULT].make_context(info_name, args, parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)


app = typer.Typer(cls=FailoverGroup, help="Fail a replicated VM over to its replica "
                                          "(`abdr failover PLAN VM`), or undo it (`abdr failover undo`).")

PointOpt = Annotated[str, typer.Option("--restore-point", help="latest | a replica point id | now (final sync "
                                                               "first; needs --source-shutdown).")]


def _said_failover(r: dict) -> str:
    d = r["details"]
    extra = f", final sync moved {human_bytes(d['final_sync_bytes'])}" if "final_sync_bytes" in d else ""
    return (f"[bold]{r['plan']}/{r['vm']}[/bold] failed over: the replica runs point {r['point_id']} "
            f"(state {r['state']}); source {d.get('source', '?')}{extra}")


@app.command(FailoverGroup.DEFAULT, hidden=True, no_args_is_help=True)
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


@app.command("undo", no_args_is_help=True)
def failover_undo(plan: PlanArg, vm: VmArg, wait: WaitOpt = False, as_json: JsonOpt = False) -> None:
    """Undo a failover: the replica returns to the newest replicated point.

    The replica stops; what it did since the failover is discarded; replication resumes."""
    with cli_errors():
        req = UndoFailoverRequest(plan=plan, vm=vm)
        run_dr(lambda c: c.undo_failover(req), wait, as_json, f"undo of the failover of {plan}/{vm}",
               lambda r: f"failover of [bold]{r['plan']}/{r['vm']}[/bold] undone: the replica is back at point "
                         f"{r['point_id']} (state {r['state']})")
