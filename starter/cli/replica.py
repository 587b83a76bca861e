"""`abdr replica`: each replicated VM's copy, its state and RPO lag, and its history."""

from __future__ import annotations

from typing import Annotated

import typer

from models.admin import ReplicaView
from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt
from starter.cli.render import POINT_COLUMNS, emit, human_duration, point_row, table, when

app = typer.Typer(help="Replicas: each replicated VM's copy, its state and RPO lag.", no_args_is_help=True)


def replica_row(o: ReplicaView) -> dict:
    return {"plan": o.plan, "vm": f"{o.source.cluster}/{o.source.vm}",
            "replica": f"{o.replica.cluster}/{o.replica.vm}", "state": o.state,
            "newest point": o.replica_point, "point time": when(o.last_point_at),
            "RPO lag": human_duration(o.rpo_lag_s) or "no point yet"}


@app.command("list")
def replica_list(plan: Annotated[str | None, typer.Option(help="Only this plan's replicas.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List replicas: state, newest point and its time, RPO lag (time since that point)."""
    with cli_errors():
        replicas = with_client(lambda c: c.list_replicas(plan))
        emit(replicas, as_json, lambda rows: table(
            [replica_row(o) for o in rows], ["plan", "vm", "replica", "state", "newest point", "point time",
                                             "RPO lag"], "replicas"))


@app.command("history")
def replica_history(plan: Annotated[str, typer.Argument(help="The replication plan.")],
                    vm: Annotated[str, typer.Argument(help="The protected (source) VM's name.")],
                    limit: Annotated[int, typer.Option(min=1, max=1000, help="Entries per page.")] = 50,
                    before: Annotated[int | None, typer.Option(help="Page on: the `next` a page printed.")] = None,
                    as_json: JsonOpt = False) -> None:
    """A replica's state changes, newest first, a page at a time (the catalog keeps them all)."""
    with cli_errors():
        page = with_client(lambda c: c.replica_history(plan, vm, limit, before))
        emit(page, as_json, lambda p: table(
            [{"at": when(e.at), "from": e.from_state, "to": e.to_state, "by": e.owner or "",
              "reason": e.reason} for e in p.entries], ["at", "from", "to", "by", "reason"],
            f"history of {plan}/{vm}: {len(p.entries)} of {p.total}"
            + (f" (next: --before {p.next_before})" if p.next_before else "")))


@app.command("points")
def replica_points(plan: Annotated[str, typer.Argument(help="The replication plan.")],
                   vm: Annotated[str, typer.Argument(help="The protected (source) VM's name.")],
                   as_json: JsonOpt = False) -> None:
    """The replica's points, newest first: the IDs `failover --restore-point` and
    `failover-test start --restore-point` take."""
    with cli_errors():
        points = with_client(lambda c: c.replica_points(plan, vm))
        emit(points, as_json, lambda rows: table([point_row(p) for p in rows], POINT_COLUMNS,
                                                 f"points of the replica of {plan}/{vm}"))
