"""`abdr cluster`: sets of VMs reached through a driver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt
from starter.cli.plan_files import local_cluster_dir
from starter.cli.render import emit, say, table
from starter.client import Invalid
from starter.runtime.settings import get_settings

app = typer.Typer(help="Clusters: sets of VMs reached through a driver.", no_args_is_help=True)


@app.command("add")
def cluster_add(
    name: str,
    site: Annotated[str, typer.Option("--site", help="The site the cluster is in.")],
    driver: Annotated[str, typer.Option(help="local (aoc and libvirt are planned).")] = "local",
    path: Annotated[Path | None, typer.Option(help="local: the cluster directory "
                                                    "(default <ABDR_DATA_DIR>/clusters/<NAME>).")] = None,
    endpoint: Annotated[str, typer.Option(help="Other drivers: AOC URL or libvirt URI.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Add a cluster to a site."""
    with cli_errors():
        if path is not None and endpoint:
            raise Invalid("give --path (local clusters) or --endpoint (other drivers), not both")
        if path is not None:
            endpoint = str(path.absolute())
        elif driver == "local" and not endpoint:
            endpoint = local_cluster_dir(get_settings().data_dir, name)
        cluster = with_client(lambda c: c.add_cluster(name, site, driver, endpoint))
        emit(cluster, as_json, lambda r: say(
            f"cluster [bold]{r.name}[/bold] added to site {r.site} ({r.driver}: {r.endpoint})"))


@app.command("list")
def cluster_list(site: Annotated[str | None, typer.Option(help="Only this site's.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List clusters."""
    with cli_errors():
        clusters = with_client(lambda c: c.list_clusters(site))
        emit(clusters, as_json, lambda rows: table(rows, ["name", "site", "driver", "endpoint"], "clusters"))
