"""`abdr cluster`: sets of VMs reached through a driver."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from drivers import DRIVERS, join_cluster_id, join_endpoint
from drivers.base import DriverError
from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt, NameArg, SiteOpt
from starter.cli.plan_files import default_endpoint
from starter.cli.render import emit, say, table

app = typer.Typer(help="Clusters: sets of VMs reached through a driver.", no_args_is_help=True)
# --driver's choices: the registry's names (built at run time, which mypy cannot follow).
DriverName = StrEnum("DriverName", [(name, name) for name in DRIVERS])  # type: ignore[misc]
DRIVER_HELP = "The driver: " + "; ".join(f"{name}, {kind.description}" for name, kind in DRIVERS.items()) + "."


@app.command("add")
def cluster_add(
    name: NameArg,
    site: SiteOpt,
    driver: Annotated[DriverName, typer.Option(help=DRIVER_HELP)] = DriverName("local"),
    path: Annotated[Path | None, typer.Option(help="The cluster directory (local), or the directory where "
                                               "abdr keeps a libvirt cluster's disks.")] = None,
    endpoint: Annotated[str, typer.Option(help="libvirt: the host's URI (qemu:///system, qemu+tls://HOST/system); "
                                               "aoc: its URL.")] = "",
    cluster_id: Annotated[str | None, typer.Option(help="aoc: the cluster's id in its AOC.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a cluster to a site."""
    with cli_errors():
        try:
            endpoint = join_cluster_id(driver.value, join_endpoint(driver.value, endpoint, path), cluster_id)
        except DriverError as e:
            from starter.client import Invalid

            raise Invalid(str(e)) from None
        if not endpoint:
            from starter.runtime.settings import get_settings

            endpoint = default_endpoint(driver.value, get_settings().data_dir, name)
        cluster = with_client(lambda c: c.add_cluster(name, site, driver.value, endpoint))
        emit(cluster, as_json, lambda r: say(
            f"cluster [bold]{r.name}[/bold] added to site {r.site} ({r.driver}: {r.endpoint})"))


@app.command("list")
def cluster_list(site: Annotated[str | None, typer.Option(help="Only this site's.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List clusters."""
    with cli_errors():
        clusters = with_client(lambda c: c.list_clusters(site))
        emit(clusters, as_json, lambda rows: table(rows, ["name", "site", "driver", "endpoint"], "clusters"))
