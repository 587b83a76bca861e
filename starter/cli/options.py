"""The options and arguments more than one `abdr` command takes, declared once: `--json`,
the names of what is added, the plan fields backup and replication plans share, and the DR
commands' PLAN VM [--wait]."""

from __future__ import annotations

from typing import Annotated

import typer

from models.inventory import name_problem


def _checked_name(value: str | None) -> str | None:
    """A new thing's name, refused before anything is contacted, in the words every refusal
    of a name uses (exit 2, one line: `main` reports click's BadParameter)."""
    if value is not None and (why := name_problem(value)) is not None:
        raise typer.BadParameter(why)
    return value


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

# Plan fields both plan kinds have (their compact forms: starter/cli/grammar.py).
VmsOpt = Annotated[list[str] | None, typer.Option("--vm", help="cluster/vm; repeat for more.")]
ScheduleOpt = Annotated[str | None, typer.Option(
    "--schedule", help="When runs are due: 'every 15m', 'every 2h at :10', 'daily 01:00,13:00', 'every 2d 01:00', "
                       "'weekly mon,thu 02:30', 'monthly 1,15 03:00'.")]
WindowOpt = Annotated[str | None, typer.Option("--window", help="HH:MM-HH:MM, may cross midnight ('none' clears).")]
RetentionOpt = Annotated[str | None, typer.Option("--retention", help="count:N | days:N | forever.")]
TzOpt = Annotated[str | None, typer.Option("--tz", help="IANA time zone of the schedules (default UTC).")]
ConsistencyOpt = Annotated[str | None, typer.Option("--consistency", help="crash | fs.")]
CompressionOpt = Annotated[bool | None, typer.Option("--compression/--no-compression",
                                                     help="zstd: a backup's new chunks, a replication's "
                                                          "transport (default on).")]
DescOpt = Annotated[str | None, typer.Option("--description", help="Free text.")]

# The name of what `site add`, `cluster add` create, and the site a cluster is added to.
NameArg = Annotated[str, typer.Argument(metavar="NAME", callback=_checked_name)]
SiteOpt = Annotated[str, typer.Option("--site", callback=_checked_name, help="The site the cluster is in.")]

# The DR commands: failover, failover undo, failover-test, failback, permanent-failover.
PlanArg = Annotated[str, typer.Argument(metavar="PLAN", help="The replication plan.")]
VmArg = Annotated[str, typer.Argument(metavar="VM", help="The source VM's name (in the plan).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the result (exit 1 if the operation fails).")]
PowerOnOpt = Annotated[bool, typer.Option("--power-on/--no-power-on", help="Start the VM afterwards.")]
