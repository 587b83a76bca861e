"""`abdr site|cluster|vm|repository`: the things plans run on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from models.jobs import MaintenanceResult
from models.services import RepositoryCreate
from starter.cli_common import JsonOpt, cli_errors, say, table, with_client
from starter.plan_files import UsageError
from starter.client import AbdrClient, AbdrError
from starter.output import emit, emit_json
from starter.plan_files import local_cluster_dir
from starter.progress import with_spinner
from starter.runtime.settings import get_settings

site_app = typer.Typer(help="Sites: failure domains, each with its own abdr worker.", no_args_is_help=True)
cluster_app = typer.Typer(help="Clusters: sets of VMs reached through a driver.", no_args_is_help=True)
vm_app = typer.Typer(help="VMs of a cluster; import and write are local data-loading tools.", no_args_is_help=True)
repo_app = typer.Typer(help="Backup repositories: where restore points live.", no_args_is_help=True)

ClusterOpt = Annotated[str, typer.Option("--cluster", "-c", help="Cluster name.")]


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def show_workflow(client: AbdrClient, handle: Any, as_json: bool, what: str) -> None:
    info = {"workflow_id": handle.id, "run_id": handle.result_run_id, "ui": client.ui_link(handle.id)}
    if as_json:
        emit_json(info)
    else:
        say(f"{what} started: workflow [bold]{handle.id}[/bold]\n  {info['ui']}")


# -- sites ---------------------------------------------------------------------------------

@site_app.command("add")
def site_add(name: str, description: Annotated[str, typer.Option(help="Free text.")] = "",
             as_json: JsonOpt = False) -> None:
    """Add a site."""
    with cli_errors():
        site = with_client(lambda c: c.add_site(name, description))
        emit(site, as_json, lambda s: say(f"site [bold]{s['name']}[/bold] added"))


@site_app.command("list")
def site_list(as_json: JsonOpt = False) -> None:
    """List sites."""
    with cli_errors():
        sites = with_client(lambda c: c.list_sites())
        emit(sites, as_json, lambda rows: table(rows, ["name", "description"], "sites"))


# -- clusters ------------------------------------------------------------------------------

@cluster_app.command("add")
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
            raise AbdrError("give --path (local clusters) or --endpoint (other drivers), not both")
        if path is not None:
            endpoint = str(path.absolute())
        elif driver == "local" and not endpoint:
            endpoint = local_cluster_dir(get_settings().data_dir, name)
        cluster = with_client(lambda c: c.add_cluster(name, site, driver, endpoint))
        emit(cluster, as_json, lambda r: say(
            f"cluster [bold]{r['name']}[/bold] added to site {r['site']} ({r['driver']}: {r['endpoint']})"))


@cluster_app.command("list")
def cluster_list(site: Annotated[str | None, typer.Option(help="Only this site's.")] = None,
                 as_json: JsonOpt = False) -> None:
    """List clusters."""
    with cli_errors():
        clusters = with_client(lambda c: c.list_clusters(site))
        emit(clusters, as_json, lambda rows: table(rows, ["name", "site", "driver", "endpoint"], "clusters"))


async def find_cluster(client: AbdrClient, name: str) -> dict:
    for c in await client.list_clusters():
        if c["name"] == name:
            return c
    raise AbdrError(f"cluster {name!r} not found")


# -- VMs -----------------------------------------------------------------------------------

def _vm_row(v: dict) -> dict:
    cfg = v["config"]
    return {"name": cfg["name"], "id": v["id"], "power": v.get("power_state", ""), "vcpu": cfg.get("vcpu"),
            "memory": f"{cfg.get('memory_mib')} MiB",
            "disks": ", ".join(f"{d['name']} {human_bytes(d['size_bytes'])}" for d in cfg.get("disks", [])),
            "networks": ", ".join(n["network"] for n in cfg.get("nics", []))}


@vm_app.command("list")
def vm_list(cluster: ClusterOpt, as_json: JsonOpt = False) -> None:
    """List a cluster's VMs (asked of its site's worker)."""
    with cli_errors():
        async def run(c: AbdrClient) -> list[dict]:
            return await c.list_vms(cluster, (await find_cluster(c, cluster))["site"])

        vms = with_client(run)
        emit(vms, as_json, lambda rows: table([_vm_row(v) for v in rows],
                                                   ["name", "id", "power", "vcpu", "memory", "disks", "networks"],
                                                   f"VMs of {cluster}"))


def local_driver(cluster: str) -> Any:
    """The local driver of a cluster, opened in this process (its directory must be here)."""
    from drivers.local import LocalDriver

    info = with_client(lambda c: find_cluster(c, cluster))
    if info["driver"] != "local":
        raise AbdrError(f"cluster {cluster!r} uses driver {info['driver']!r}; this tool works on local clusters only")
    return LocalDriver(info["endpoint"] or local_cluster_dir(get_settings().data_dir, cluster), cluster)


@vm_app.command("import")
def vm_import(
    image: Annotated[Path, typer.Argument(help="A raw disk image file.", exists=True, dir_okay=False)],
    cluster: ClusterOpt,
    name: Annotated[str, typer.Option("--name", "-n", help="Name of the new VM.")],
    disk: Annotated[str, typer.Option(help="Disk the image goes to.")] = "disk0",
    as_json: JsonOpt = False,
) -> None:
    """Create a VM on a local cluster from a raw image (a data-loading tool: it runs in this
    process on the cluster's directory, not as a workflow)."""
    with cli_errors():
        from drivers.local.tools import import_image

        vm = import_image(local_driver(cluster), image, name, disk=disk)
        emit(vm, as_json, lambda v: say(
            f"VM [bold]{cluster}/{v.name}[/bold] ({v.id}) created from {image}: "
            f"{', '.join(f'{d.name} {human_bytes(d.size_bytes)}' for d in v.config.disks)}"))


@vm_app.command("write")
def vm_write(
    cluster: ClusterOpt,
    name: Annotated[str, typer.Option("--name", "-n", help="The VM.")],
    fraction: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of the disk's 64 KiB blocks to rewrite.")],
    seed: Annotated[int, typer.Option(help="Same seed, same blocks and bytes.")] = 0,
    disk: Annotated[str, typer.Option(help="Disk to write.")] = "disk0",
    as_json: JsonOpt = False,
) -> None:
    """Overwrite a deterministic scattered share of a local VM's disk, as a running guest
    would (the demo and test workload; runs in this process)."""
    with cli_errors():
        from drivers.local.tools import rewrite_fraction

        driver = local_driver(cluster)
        vm = driver.find_vm(name)
        if vm is None:
            raise AbdrError(f"VM {name!r} not found in cluster {cluster!r}")
        extents = rewrite_fraction(driver, vm.id, disk, fraction, seed)
        out = {"vm": f"{cluster}/{name}", "disk": disk, "extents": len(extents),
               "bytes": sum(e.length for e in extents)}
        emit(out, as_json, lambda o: say(
            f"wrote {human_bytes(o['bytes'])} in {o['extents']} extents to {o['vm']} {o['disk']}"))


# -- repositories ------------------------------------------------------------------------

@repo_app.command("create")
def repo_create(
    name: str,
    path: Annotated[Path, typer.Option(help="The (mounted) directory, as the site's worker sees it.")],
    site: Annotated[str, typer.Option(help="The site whose worker owns it.")] = "default",
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    encrypt: Annotated[bool, typer.Option(help="Encrypt chunks and manifests (AES-256-GCM) under a key the "
                                               "site's worker keeps in its key directory; keep a copy of the "
                                               "key file: without it nothing can be restored.")] = False,
    key_file: Annotated[Path | None, typer.Option(help="With --encrypt: use this existing key file (path as "
                                                       "the site's worker sees it) instead of a new key.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a repository (or adopt an existing abdr repository at that path)."""
    with cli_errors():
        if key_file is not None and not encrypt:
            raise UsageError("--key-file is the key of an encrypted repository: give --encrypt too")
        spec = RepositoryCreate(name=name, path=str(path.absolute()), site=site, description=description,
                                encrypt=encrypt, key_file=str(key_file.absolute()) if key_file else None)
        repo = with_client(lambda c: c.create_repository(spec))
        emit(repo, as_json, _render_created)


def _render_created(r: dict) -> None:
    say(f"repository [bold]{r['name']}[/bold] at {r['path']} (site {r['site']})")
    if r.get("key_file"):
        say(f"encrypted; the site's worker keeps its key at {r['key_file']} (key id {r['key_id']}). Keep a copy "
            "of that file somewhere safe, outside the repository: without it no point can be restored.")


@repo_app.command("add-key")
def repo_add_key(
    name: str,
    key_file: Annotated[Path, typer.Option(help="The repository's key file, as the site's worker sees it.")],
    as_json: JsonOpt = False,
) -> None:
    """Give the site's worker the key of an encrypted repository (a wrong key is refused)."""
    with cli_errors():
        out = with_client(lambda c: c.add_repository_key(name, str(key_file.absolute())))
        emit(out, as_json, lambda o: say(f"repository {o['name']}: key {o['key_id']} installed at {o['key_file']}"))


@repo_app.command("list")
def repo_list(as_json: JsonOpt = False) -> None:
    """List repositories."""
    with cli_errors():
        repos = with_client(lambda c: c.list_repositories())
        emit(repos, as_json, lambda rows: table(rows, ["name", "kind", "path", "site", "description"],
                                                     "repositories"))


@repo_app.command("verify")
def repo_verify(
    name: str,
    prune: Annotated[bool, typer.Option(help="Also delete points every plan's retention lets go.")] = False,
    gc: Annotated[bool, typer.Option(help="Also remove chunks no point references.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the result (exit 1 if anything is damaged).")] = False,
    read_iops: Annotated[int | None, typer.Option(min=1, help="Cap verify's and GC's reads (64 KiB I/Os per "
                                                               "second), to spare running backups.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a repository as a RepositoryMaintenance workflow: re-hash every referenced chunk, cross-check the catalog, set damaged chunks aside so the next backup stores them anew."""
    with cli_errors():
        async def run(c: AbdrClient) -> tuple[AbdrClient, Any, MaintenanceResult | None]:
            handle = await c.maintain_repository(name, verify=True, prune=prune, gc=gc, read_iops=read_iops)
            if not wait:
                return c, handle, None
            label = f"verifying repository {name}"
            done = await with_spinner(c.result(handle), label, not as_json)
            return c, handle, MaintenanceResult.model_validate(done)

        client, handle, result = with_client(run)
        if result is None:
            show_workflow(client, handle, as_json, f"maintenance of {name}")
            return
        emit(result, as_json, _render_maintenance)
        if result.damaged:
            raise typer.Exit(1)


def _render_maintenance(r: MaintenanceResult) -> None:
    say(f"repository [bold]{r.repository}[/bold]: {r.verified_points} points verified, "
        f"{r.findings} findings, {r.counts.get('damaged_points', 0)} damaged points, "
        f"{r.pruned_count} pruned, {r.healed_points} healed, "
        f"gc removed {r.gc_removed_chunks} chunks ({human_bytes(r.gc_removed_bytes)})")
    if r.damaged:
        _findings_table(r.damaged)
        if r.findings > len(r.damaged):
            say(f"... and {r.findings - len(r.damaged)} more: `abdr repository findings {r.repository} "
                f"--offset {len(r.damaged)}`")


FINDING_COLUMNS = ["kind", "point_id", "disk", "offset", "length", "problem", "detail"]


def _findings_table(rows: list[dict]) -> None:
    table([{k: f.get(k, "") for k in FINDING_COLUMNS} for f in rows], FINDING_COLUMNS, "findings")


@repo_app.command("findings")
def repo_findings(
    name: str,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many findings.")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Page through the last verify's findings (a verify's result carries only the first few)."""
    with cli_errors():
        page = with_client(lambda c: c.repository_findings(name, offset, limit))

        def render(p: dict) -> None:
            shown = len(p["findings"])
            say(f"repository [bold]{p['repository']}[/bold]: findings {p['offset'] + 1 if shown else p['offset']}-"
                f"{p['offset'] + shown} of {p['total']}")
            if shown:
                _findings_table(p["findings"])

        emit(page, as_json, render)
