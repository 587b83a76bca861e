"""`abdr up`, `abdr api` and `abdr status`: run the embedded stack or the REST API in the
foreground, and check that Temporal, the catalog and the site workers answer."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer

from starter.cli.common import cli_errors
from starter.cli.options import JsonOpt
from starter.cli.render import console, emit

if TYPE_CHECKING:
    from starter.runtime.settings import Settings


def _settings() -> Settings:
    """The settings, with logging configured as they say (the stack and the API log)."""
    from starter.runtime.logging import configure_logging
    from starter.runtime.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def up() -> None:
    """Run abdr in the foreground: Temporal dev server + Web UI, catalog, workers."""
    with cli_errors():
        settings = _settings()
        from starter.stack.up import run_stack

        asyncio.run(run_stack(settings))


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the REST API (OpenAPI at /openapi.json, docs at /docs); needs ABDR_API_TOKEN."""
    with cli_errors():
        import uvicorn

        from starter.api.main import make_api

        settings = _settings()
        uvicorn.run(make_api(settings, settings.api_token), host=host, port=port, log_level="warning")


def status(
    as_json: JsonOpt = False,
    site: Annotated[list[str] | None, typer.Option("--site", help="Sites to check (default ABDR_SITE).")] = None,
    probe: Annotated[bool, typer.Option(help="Run a health-check workflow through each site worker.")] = True,
) -> None:
    """Is Temporal reachable, which workers poll which queues, is the catalog reachable, does
    each site's worker reach its clusters (and their versions)."""
    with cli_errors():
        from starter.runtime.settings import get_settings
        from starter.stack.status import gather_status

        settings = get_settings()
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
        for c in p.get("cluster_health", []):
            versions = ", ".join(v if k == "hypervisor" else f"{k} {v}" for k, v in c["versions"].items())
            console.print(f"Cluster   {mark(c['ok'])}  {p['site']}/{c['name']} ({c['driver']}): "
                          f"{c['reached'] or c['error']}{'  ' + versions if versions else ''}")
    if demo := r.get("demo"):
        said = {"seeding": "[yellow]being seeded[/yellow] (abdr up prints its banner when it is ready)",
                "ready": "ready", "failed": "[red]failed[/red]: " + "; ".join(demo["lines"])}
        console.print(f"Demo      {said.get(demo['state'], demo['state'])}")
    console.print("healthy" if r["healthy"] else "[red]unhealthy[/red]")
