"""The `abdr` command line: one typer app assembled from a module per noun; `--json` on
every listing."""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from starter.cli import (
    aoc_sim,
    apply,
    backup_plan,
    cluster,
    failback,
    failover,
    failover_test,
    job,
    permanent_failover,
    replica,
    replication_plan,
    repository,
    restore,
    restore_point,
    service,
    site,
    stack,
    vm,
)
from starter.cli.render import err_console

EXIT_CODES_HELP = ("Exit codes: 0 done; 1 failed (or a run ended with failures); 2 bad input; 3 not found; "
                   "4 conflict (exists already, or in the wrong state); 5 busy (an operation on it is "
                   "running); 6 unavailable (a worker or site did not answer); 7 damaged data; 130 interrupted.")
app = typer.Typer(name="abdr", help="abdr: disaster recovery for virtual machines, on Temporal.",
                  epilog=EXIT_CODES_HELP, no_args_is_help=True, pretty_exceptions_enable=False)


app.command()(stack.up)
app.command()(stack.api)
app.command()(stack.status)
# One command tree: a sub-app per noun (their modules hold the commands).
app.add_typer(site.app, name="site")
app.add_typer(cluster.app, name="cluster")
app.add_typer(vm.app, name="vm")
app.add_typer(repository.app, name="repository")
app.add_typer(service.app, name="service")
app.add_typer(backup_plan.app, name="backup-plan")
app.add_typer(restore_point.app, name="restore-point")
app.command("restore")(restore.restore)
app.add_typer(job.app, name="job")
app.add_typer(replication_plan.app, name="replication-plan")
app.add_typer(replica.app, name="replica")
app.add_typer(failover.app, name="failover")  # `failover PLAN VM` and `failover undo PLAN VM`
app.add_typer(failover_test.app, name="failover-test")
app.command("failback", no_args_is_help=True)(failback.failback)
app.command("permanent-failover", no_args_is_help=True)(permanent_failover.permanent_failover)
app.command("apply")(apply.apply)
app.command("aoc-sim")(aoc_sim.aoc_sim)


def main() -> None:
    """Run the CLI, then leave without interpreter finalization: the Temporal client's Rust
    threads can abort a finishing interpreter ("PyGILState_Release", temporalio/sdk-python
    #300), which would turn a successful command into exit 134."""
    try:
        rv = app(standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except typer.TyperException as e:  # click's usage errors (missing option, bad value): one line too
        ctx = getattr(e, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        if e.format_message():  # empty: no arguments, and the help was shown
            err_console.print(f"[red]error:[/red] {escape(e.format_message())}{hint}", highlight=False)
        code = getattr(e, "exit_code", 2)
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        code = 1
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
