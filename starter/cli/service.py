"""`abdr service`: each site's backup and replication services and their limits (parallel
jobs, IOPS, bandwidth, retries), which hold across all plans and manual runs."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from models.admin import Services
from models.services import BackupService, ReplicationService
from starter.cli.common import cli_errors, with_client
from starter.cli.grammar import UsageError
from starter.cli.options import JsonOpt
from starter.cli.render import emit, say, table

if TYPE_CHECKING:
    from starter.client import AbdrClient

app = typer.Typer(help="Services: each site's backup and replication limits.", no_args_is_help=True)


class Kind(StrEnum):
    backup = "backup"
    replication = "replication"


MODELS: dict[Kind, type[BackupService] | type[ReplicationService]] = {
    Kind.backup: BackupService, Kind.replication: ReplicationService}
LIMIT_COLUMNS = ["max_parallel_backups", "max_parallel_restores", "backup_read_iops", "restore_write_iops",
                 "max_replication_jobs", "max_failback_jobs", "replication_bandwidth_mbps",
                 "failback_bandwidth_mbps", "max_retries", "retry_interval_s"]
# What `none` means for a limit that may be unset: no cap at all.
UNCAPPED = {"backup_read_iops", "restore_write_iops", "replication_bandwidth_mbps", "failback_bandwidth_mbps"}


def _rows(s: Services) -> list[dict[str, Any]]:
    return [{"kind": kind, **svc.model_dump(mode="json")}
            for kind, group in (("backup", s.backup), ("replication", s.replication)) for svc in group]


@app.command("show")
def service_show(site: Annotated[str | None, typer.Option(help="Only this site's services.")] = None,
                 as_json: JsonOpt = False) -> None:
    """Show the services and their limits (a site with none configured shows its defaults)."""
    with cli_errors():
        services = with_client(lambda c: c.list_services(site))
        emit(services, as_json, lambda s: table(_rows(s), ["kind", "name", "site", *LIMIT_COLUMNS], "services"))


def _limit(value: str | None, field: str) -> Any:
    if value is None or value.lower() != "none":
        return value
    if field not in UNCAPPED:
        raise UsageError(f"--{field.replace('_', '-')} takes a number ('none' clears only an IOPS or bandwidth cap)")
    return None


@app.command("set")
def service_set(
    kind: Annotated[Kind, typer.Argument(metavar="KIND", help="backup | replication.")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="The service (a backup plan names its backup "
                                                             "service; default 'default').")],
    site: Annotated[str | None, typer.Option(help="The service's site (required for a new service).")] = None,
    max_parallel_backups: Annotated[str | None, typer.Option(help="Backups at once (backup).")] = None,
    max_parallel_restores: Annotated[str | None, typer.Option(help="Restores at once (backup).")] = None,
    backup_read_iops: Annotated[str | None, typer.Option(help="Read IOPS cap of a backup, or none.")] = None,
    restore_write_iops: Annotated[str | None, typer.Option(help="Write IOPS cap of a restore, or none.")] = None,
    max_replication_jobs: Annotated[str | None, typer.Option(help="Replications at once (replication).")] = None,
    max_failback_jobs: Annotated[str | None, typer.Option(help="Failbacks at once (replication).")] = None,
    replication_bandwidth_mbps: Annotated[str | None, typer.Option(help="Mbit/s cap, or none.")] = None,
    failback_bandwidth_mbps: Annotated[str | None, typer.Option(help="Mbit/s cap, or none.")] = None,
    max_retries: Annotated[str | None, typer.Option(help="Retries of a failed step.")] = None,
    retry_interval: Annotated[str | None, typer.Option(help="Seconds before the first retry.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a service's limits: the options change only what they name (a new service starts
    from the defaults). Runs that start from now on use them."""
    given = {"max_parallel_backups": max_parallel_backups, "max_parallel_restores": max_parallel_restores,
             "backup_read_iops": backup_read_iops, "restore_write_iops": restore_write_iops,
             "max_replication_jobs": max_replication_jobs, "max_failback_jobs": max_failback_jobs,
             "replication_bandwidth_mbps": replication_bandwidth_mbps,
             "failback_bandwidth_mbps": failback_bandwidth_mbps, "max_retries": max_retries,
             "retry_interval_s": retry_interval}
    model = MODELS[kind]
    with cli_errors():
        changes = {k: _limit(v, k) for k, v in given.items() if v is not None}
        foreign = sorted(set(changes) - set(model.model_fields))
        if foreign:
            raise UsageError(f"a {kind} service has no {', '.join('--' + f.replace('_', '-') for f in foreign)}")

        async def run(c: AbdrClient) -> BackupService | ReplicationService:
            current = await c.list_services(site)
            found = next((s for s in (current.backup if kind == Kind.backup else current.replication)
                          if s.name == name and (site is None or s.site == site)), None)
            if found is None and site is None:
                raise UsageError(f"{kind} service {name!r} is not configured yet: give its --site")
            base = found.model_dump() if found is not None else {"name": name, "site": site}
            return await c.put_service(model.model_validate({**base, **changes, "site": site or base["site"]}))

        svc = with_client(run)
        emit(svc, as_json, lambda s: say(f"{kind} service [bold]{s.name}[/bold] of site {s.site}: "
                                         + ", ".join(f"{k}={v}" for k, v in s.model_dump().items()
                                                     if k not in ("name", "site"))))
