"""`abdr restore-point`: one VM at one instant, in a repository."""

from __future__ import annotations

from typing import Annotated

import typer

from models.admin import RestorePointDetail
from starter.cli.common import cli_errors, with_client
from starter.cli.grammar import parse_vm
from starter.cli.options import JsonOpt
from starter.cli.render import POINT_COLUMNS, emit, human_bytes, point_row, say, table

app = typer.Typer(help="Restore points: one VM at one instant, in a repository.", no_args_is_help=True)


@app.command("list")
def point_list(
    plan: Annotated[str | None, typer.Option(help="Only this plan's points.")] = None,
    vm: Annotated[str | None, typer.Option(help="Only this VM's points (cluster/vm).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List restore points, oldest first."""
    with cli_errors():
        if vm is not None:
            parse_vm(vm)
        points = with_client(lambda c: c.list_restore_points(plan=plan, vm=vm))
        emit(points, as_json, lambda rows: table([point_row(p) for p in rows], POINT_COLUMNS, "restore points"))


@app.command("show")
def point_show(point_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False) -> None:
    """Show a restore point and the VM configuration it holds."""
    with cli_errors():
        emit(with_client(lambda c: c.get_restore_point(point_id)), as_json, _render_point)


def _render_point(p: RestorePointDetail) -> None:
    table([{"field": k, "value": v} for k, v in point_row(p).items()], ["field", "value"], "restore point")
    cfg = p.vm_config
    disks = ", ".join(f"{d.name} {human_bytes(d.size_bytes)}" for d in cfg.disks)
    nics = ", ".join(f"{n.name}@{n.network}" for n in cfg.nics)
    say(f"VM config: {cfg.vcpu} vCPU, {cfg.memory_mib} MiB; disks {disks or '-'}; NICs {nics or '-'}")


@app.command("delete")
def point_delete(point_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False) -> None:
    """Delete a restore point (other points stay restorable: each is independent)."""
    with cli_errors():
        out = with_client(lambda c: c.delete_restore_point(point_id))
        emit(out, as_json, lambda o: say(f"restore point {point_id} deleted"))
