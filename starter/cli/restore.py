"""`abdr restore ID`: a restore point back in place or as a new VM (a Restore workflow)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.jobs import RestoreResult
from models.requests import RestoreMode, RestoreRequest
from starter.cli.common import cli_errors, with_client
from starter.cli.grammar import UsageError, parse_network_map
from starter.cli.options import JsonOpt
from starter.cli.progress import with_spinner
from starter.cli.render import emit, human_bytes, say, show_workflow

if TYPE_CHECKING:
    from starter.client import AbdrClient


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
