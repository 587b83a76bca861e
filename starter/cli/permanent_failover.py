"""`abdr permanent-failover PLAN VM`: a failover made final; the replica becomes the VM."""

from __future__ import annotations

from typing import Annotated

import typer

from models.requests import PermanentFailoverRequest
from starter.cli.common import cli_errors
from starter.cli.dr import run_dr
from starter.cli.options import JsonOpt, PlanArg, VmArg, WaitOpt
from starter.cli.render import human_bytes


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
