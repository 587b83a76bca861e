"""The `abdr` command line: one typer app; `--json` on every listing."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from drivers.catalog.store import CatalogError
from starter.logging import configure_logging
from starter.output import console, emit, user_errors
from starter.settings import get_settings
from starter.stack import StackError

app = typer.Typer(name="abdr", help="abdr: disaster recovery for virtual machines, on Temporal.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
KNOWN_ERRORS: tuple[type[BaseException], ...] = (CatalogError, StackError, RuntimeError, OSError, ValueError)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def up() -> None:
    """Run abdr in the foreground: Temporal dev server + Web UI, catalog, workers."""
    with user_errors(*KNOWN_ERRORS):
        settings = get_settings()
        configure_logging(settings.log_level, settings.log_format)
        from starter.stack import run_stack

        asyncio.run(run_stack(settings))


@app.command()
def status(
    as_json: JsonOpt = False,
    site: Annotated[list[str] | None, typer.Option("--site", help="Sites to check (default ABDR_SITE).")] = None,
    probe: Annotated[bool, typer.Option(help="Run a health-check workflow through each site worker.")] = True,
) -> None:
    """Is Temporal reachable, which workers poll which queues, is the catalog reachable."""
    with user_errors(*KNOWN_ERRORS):
        settings = get_settings()
        from starter.status import gather_status

        report = asyncio.run(gather_status(settings, site or [settings.site], probe))
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
