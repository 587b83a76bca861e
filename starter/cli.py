"""The `abdr` command line: one typer app; `--json` on every listing."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from starter import cli_apply, cli_backup, cli_inventory, cli_replication
from starter.cli_common import JsonOpt, cli_errors
from starter.runtime.logging import configure_logging
from starter.output import console, emit, err_console
from starter.runtime.settings import get_settings

app = typer.Typer(name="abdr", help="abdr: disaster recovery for virtual machines, on Temporal.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.command()
def up() -> None:
    """Run abdr in the foreground: Temporal dev server + Web UI, catalog, workers."""
    with cli_errors():
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        from starter.stack.up import run_stack

        asyncio.run(run_stack(settings))


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the REST API (OpenAPI at /openapi.json, docs at /docs); needs ABDR_API_TOKEN."""
    with cli_errors():
        import uvicorn

        from starter.api.main import make_api

        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        uvicorn.run(make_api(settings, settings.api_token), host=host, port=port, log_level="warning")


@app.command()
def status(
    as_json: JsonOpt = False,
    site: Annotated[list[str] | None, typer.Option("--site", help="Sites to check (default ABDR_SITE).")] = None,
    probe: Annotated[bool, typer.Option(help="Run a health-check workflow through each site worker.")] = True,
) -> None:
    """Is Temporal reachable, which workers poll which queues, is the catalog reachable."""
    with cli_errors():
        settings = get_settings()
        from starter.stack.status import gather_status

        report = asyncio.run(gather_status(settings, site or [settings.site, *settings.extra_sites], probe))
        emit(report, as_json, _render_status)
        if not report["healthy"]:
            raise typer.Exit(1)


def _render_status(r: dict) -> None:
    def mark(ok: bool) -> str:
        return "[green]ok[/green]" if ok else "[red]FAIL[/red]"

    t = r["temporal"]
    console.print(f"Temporal  {mark(t.get('ok', False))}  {t['address']} ns={t['namespace']} "
                  f"{t.get('server_version', '') or t.get('error', '')}  UI {t['ui']}")
    c = r["catalog"]
    console.print(f"Catalog   {mark(c['ok'])}  {c['url']} rev={c.get('schema_revision')} {c.get('error', '')}")
    for w in r.get("workers", []):
        console.print(f"Queue     {mark(bool(w['pollers']))}  {w['task_queue']} ({w['kind']}): "
                      f"{', '.join(w['pollers']) or 'no worker polling'}")
    for p in r.get("probe", []):
        console.print(f"Probe     {mark(p['ok'])}  site {p['site']}: {p.get('identity', p.get('error', ''))}")
    console.print("healthy" if r["healthy"] else "[red]unhealthy[/red]")


# One command tree: a sub-app per noun (their modules hold the commands).
app.add_typer(cli_inventory.site_app, name="site")
app.add_typer(cli_inventory.cluster_app, name="cluster")
app.add_typer(cli_inventory.vm_app, name="vm")
app.add_typer(cli_inventory.repo_app, name="repository")
app.add_typer(cli_backup.plan_app, name="backup-plan")
app.add_typer(cli_backup.point_app, name="restore-point")
app.command("restore")(cli_backup.restore)
app.add_typer(cli_backup.job_app, name="job")
app.add_typer(cli_replication.plan_app, name="replication-plan")
app.add_typer(cli_replication.replica_app, name="replica")
app.add_typer(cli_replication.failover_app, name="failover")  # `failover PLAN VM` and `failover undo PLAN VM`
app.add_typer(cli_replication.test_app, name="failover-test")
app.command("failback", no_args_is_help=True)(cli_replication.failback)
app.command("permanent-failover", no_args_is_help=True)(cli_replication.permanent_failover)
app.command("apply")(cli_apply.apply)


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
