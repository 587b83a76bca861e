"""`abdr vm`: the VMs of a cluster; import and write are local data-loading tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from models.admin import STOP_TIMEOUT_MAX_S
from models.inventory import VM
from starter.cli.common import cli_errors, find_cluster, with_client
from starter.cli.options import JsonOpt
from starter.cli.plan_files import local_cluster_dir
from starter.cli.render import emit, human_bytes, say, table

app = typer.Typer(help="VMs of a cluster; import and write are local data-loading tools.", no_args_is_help=True)

ClusterOpt = Annotated[str, typer.Option("--cluster", "-c", help="Cluster name.")]


def _vm_row(v: VM) -> dict:
    cfg = v.config
    return {"name": cfg.name, "id": v.id, "power": v.power_state, "vcpu": cfg.vcpu,
            "memory": f"{cfg.memory_mib} MiB",
            "disks": ", ".join(f"{d.name} {human_bytes(d.size_bytes)}" for d in cfg.disks),
            "networks": ", ".join(n.network for n in cfg.nics)}


@app.command("list")
def vm_list(cluster: ClusterOpt, as_json: JsonOpt = False) -> None:
    """List a cluster's VMs (asked of its site's worker)."""
    with cli_errors():
        vms = with_client(lambda c: c.list_vms(cluster))
        emit(vms, as_json, lambda rows: table([_vm_row(v) for v in rows],
                                                   ["name", "id", "power", "vcpu", "memory", "disks", "networks"],
                                                   f"VMs of {cluster}"))


ClusterArg = Annotated[str, typer.Argument(metavar="CLUSTER", help="The VM's cluster.")]
VMArg = Annotated[str, typer.Argument(metavar="VM", help="The VM's name.")]


def _said_power(v: VM) -> None:
    say(f"VM [bold]{v.cluster}/{v.config.name}[/bold] ({v.id}) is {v.power_state}")


@app.command("start")
def vm_start(cluster: ClusterArg, vm: VMArg, as_json: JsonOpt = False) -> None:
    """Power a VM on (through its site's worker); a running VM stays as it is."""
    with cli_errors():
        emit(with_client(lambda c: c.start_vm(cluster, vm)), as_json, _said_power)


@app.command("stop")
def vm_stop(cluster: ClusterArg, vm: VMArg,
            force: Annotated[bool, typer.Option("--force", help="Power off at once (no guest shutdown).")] = False,
            timeout: Annotated[int, typer.Option(min=1, max=STOP_TIMEOUT_MAX_S,
                                                 help="Seconds the guest has to shut down.")] = 30,
            as_json: JsonOpt = False) -> None:
    """Shut a VM down: the guest is asked and has --timeout seconds (exit 6 if it does not
    stop in time); --force powers it off."""
    with cli_errors():
        emit(with_client(lambda c: c.stop_vm(cluster, vm, force=force, timeout_s=timeout)), as_json, _said_power)


@app.command("export")
def vm_export(cluster: ClusterArg, vm: VMArg,
              disk: Annotated[str, typer.Argument(metavar="DISK", help="The disk (e.g. disk0).")],
              file: Annotated[str, typer.Argument(metavar="FILE", help="A new file, as the site's worker sees it.")],
              point: Annotated[str | None, typer.Option("--point", help="A restore point's id (default: the "
                                                                         "VM's disk as it is now).")] = None,
              as_json: JsonOpt = False) -> None:
    """Write a raw image of a disk to a new file on the site's worker: of a restore point
    (--point; the VM need not exist any more), or of a stopped VM's disk. Holes stay holes."""
    with cli_errors():
        if not file.startswith("/"):
            from starter.client import Invalid

            raise Invalid(f"FILE {file!r} must be an absolute path (as the site's worker sees it)")
        out = with_client(lambda c: c.export_disk(cluster, vm, disk, file, point))
        emit(out, as_json, lambda o: say(f"{cluster}/{vm} {disk}" + (f" at {point}" if point else "")
                                         + f" written to {o.path}: {human_bytes(o.size_bytes)} "
                                         f"({human_bytes(o.written_bytes)} of data)"))


def local_driver(cluster: str) -> Any:
    """The local driver of a cluster, opened in this process (its directory must be here)."""
    from drivers.local import LocalDriver
    from starter.client import Invalid
    from starter.runtime.settings import get_settings

    info = with_client(lambda c: find_cluster(c, cluster))
    if info.driver != "local":
        raise Invalid(f"cluster {cluster!r} uses driver {info.driver!r}; this tool works on local clusters only")
    return LocalDriver(info.endpoint or local_cluster_dir(get_settings().data_dir, cluster), cluster)


@app.command("import")
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


@app.command("write")
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
            from starter.client import NotFound

            raise NotFound(f"VM {name!r} not found in cluster {cluster!r}")
        extents = rewrite_fraction(driver, vm.id, disk, fraction, seed)
        out = {"vm": f"{cluster}/{name}", "disk": disk, "extents": len(extents),
               "bytes": sum(e.length for e in extents)}
        emit(out, as_json, lambda o: say(
            f"wrote {human_bytes(o['bytes'])} in {o['extents']} extents to {o['vm']} {o['disk']}"))
