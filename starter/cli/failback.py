"""`abdr failback PLAN VM`: a failed-over VM returns to its original; only what changed moves back."""

from __future__ import annotations

from models.requests import FailbackRequest
from starter.cli.common import cli_errors
from starter.cli.dr import run_dr
from starter.cli.options import JsonOpt, PlanArg, PowerOnOpt, VmArg, WaitOpt
from starter.cli.render import human_bytes


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
