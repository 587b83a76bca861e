"""`abdr site`: failure domains, each with its own abdr worker."""

from __future__ import annotations

from typing import Annotated

import typer

from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt, NameArg
from starter.cli.render import emit, say, table

app = typer.Typer(help="Sites: failure domains, each with its own abdr worker.", no_args_is_help=True)


@app.command("add")
def site_add(name: NameArg, description: Annotated[str, typer.Option(help="Free text.")] = "",
             as_json: JsonOpt = False) -> None:
    """Add a site."""
    with cli_errors():
        site = with_client(lambda c: c.add_site(name, description))
        emit(site, as_json, lambda s: say(f"site [bold]{s.name}[/bold] added"))


@app.command("list")
def site_list(as_json: JsonOpt = False) -> None:
    """List sites."""
    with cli_errors():
        sites = with_client(lambda c: c.list_sites())
        emit(sites, as_json, lambda rows: table(rows, ["name", "description"], "sites"))
