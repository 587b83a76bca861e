"""The options and arguments more than one `abdr` command takes, declared once: `--json`,
the plan fields backup and replication plans share, and the DR commands' PLAN VM [--wait]."""

from __future__ import annotations

from typing import Annotated

import typer

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

# The DR commands: failover, failover undo, failover-test, failback, permanent-failover.
PlanArg = Annotated[str, typer.Argument(metavar="PLAN", help="The replication plan.")]
VmArg = Annotated[str, typer.Argument(metavar="VM", help="The source VM's name (in the plan).")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait for the result (exit 1 if the operation fails).")]
PowerOnOpt = Annotated[bool, typer.Option("--power-on/--no-power-on", help="Start the VM afterwards.")]
