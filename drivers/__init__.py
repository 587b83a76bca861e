"""Cluster drivers behind one protocol (drivers.base.ClusterDriver) and the backup
repository (drivers.repository). `DRIVERS` is the one registry of drivers: `get_driver`
opens a cluster through it, the admin plane checks a new cluster with it, `abdr status`'s
health check probes each cluster with it (`probe_cluster`), the CLI offers its
names and the contract suite runs on each. Adding a driver is one entry here (its name must
be one of models.inventory.DRIVER_NAMES, which the workflows validate against: models/
imports no driver)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.base import ClusterDriver, DriverError, Unsupported

if TYPE_CHECKING:
    from models.inventory import Cluster


@dataclass(frozen=True)
class DriverKind:
    """One driver: how to open a cluster and check its endpoint, each given
    (endpoint, cluster name). The hooks import their driver lazily, so that importing the
    registry costs nothing but this module."""

    description: str  # one line for the CLI's help: what a cluster is and what its endpoint means
    open: Callable[[str, str], ClusterDriver]
    check: Callable[[str, str], None]  # refuses an endpoint before the catalog knows the cluster; changes nothing
    # (what answered, versions) for `abdr status`; DriverError when it cannot reach the cluster; changes nothing
    probe: Callable[[str, str], tuple[str, dict[str, str]]]
    default_endpoint: Callable[[Path, str], str] | None = None  # (data dir, name): the starter's default
    with_path: Callable[[str, Path], str] | None = None  # (endpoint, --path): the endpoint naming that directory
    with_cluster_id: Callable[[str, str], str] | None = None  # (endpoint, --cluster-id): the endpoint naming it


def _join(driver: str, endpoint: str, value: str | Path | None, hook: str, what: str) -> str:
    if value is None:
        return endpoint
    fn = getattr(DRIVERS.get(driver), hook, None)
    if fn is None:
        raise DriverError(f"driver {driver!r} takes no {what}")
    return str(fn(endpoint, value))


def join_endpoint(driver: str, endpoint: str, path: Path | None) -> str:
    """The endpoint of `cluster add --endpoint E --path P` (or a file's endpoint/path): local
    takes the directory as its endpoint; libvirt writes it after the URI (`URI#DIR`)."""
    return _join(driver, endpoint, path, "with_path", "path")


def join_cluster_id(driver: str, endpoint: str, cluster_id: str | None) -> str:
    """The endpoint of `cluster add --endpoint E --cluster-id ID` (aoc: `E#ID`)."""
    return _join(driver, endpoint, cluster_id, "with_cluster_id", "cluster id")


def _local_endpoint(endpoint: str, name: str) -> str:
    # Guessing a default here would silently split one cluster in two: the starter fills it in.
    if not endpoint:
        raise DriverError(f"local cluster {name!r} has no endpoint: set it to the cluster's directory")
    return endpoint


def _open_local(endpoint: str, name: str) -> ClusterDriver:
    from drivers.local import LocalDriver

    return LocalDriver(_local_endpoint(endpoint, name), name)


def _check_local(endpoint: str, name: str) -> None:
    from drivers.local.layout import check_cluster_root

    check_cluster_root(_local_endpoint(endpoint, name), name)


def _probe_local(endpoint: str, name: str) -> tuple[str, dict[str, str]]:
    _check_local(endpoint, name)
    root = Path(_local_endpoint(endpoint, name))
    return (f"directory {root}" if root.is_dir() else f"directory {root} (not there yet: made on first use)"), {}


def _local_default(data_dir: Path, name: str) -> str:
    return str((data_dir / "clusters" / name).absolute())


def _local_with_path(endpoint: str, path: Path) -> str:
    if endpoint:
        raise DriverError("a local cluster is its directory: give --path or --endpoint, not both")
    return str(path.absolute())


def _libvirt_with_path(endpoint: str, path: Path) -> str:
    if "#" in endpoint:
        raise DriverError(f"endpoint {endpoint!r} names a directory already (after '#'); drop --path")
    return f"{endpoint or 'qemu:///system'}#{path.absolute()}"


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """A registry hook that imports its driver's module on first call."""
    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)
    return call


DRIVERS: dict[str, DriverKind] = {
    "local": DriverKind("a directory on this host (--path; default <ABDR_DATA_DIR>/clusters/<NAME>)",
                        _open_local, _check_local, _probe_local, _local_default, _local_with_path),
    "libvirt": DriverKind("a KVM/QEMU host through libvirt (--endpoint qemu:///system or qemu+tls://HOST/system; "
                          "--path: its disk directory, default /var/lib/libvirt/images/abdr/<NAME>)",
                          _lazy("drivers.libvirt", "LibvirtDriver"), _lazy("drivers.libvirt.driver", "check_endpoint"),
                          _lazy("drivers.libvirt.driver", "probe_endpoint"), with_path=_libvirt_with_path),
    "aoc": DriverKind("an Arcfra cluster through its AOC's REST API (--endpoint https://AOC --cluster-id ID; "
                      "credentials ABDR_AOC_USERNAME/PASSWORD/SOURCE or ABDR_AOC_SECRETS_FILE, CA ABDR_AOC_CA_FILE)",
                      _lazy("drivers.aoc", "AocDriver"), _lazy("drivers.aoc.driver", "check_endpoint"),
                      _lazy("drivers.aoc.driver", "probe_endpoint"),
                      with_cluster_id=_lazy("drivers.aoc.endpoint", "join")),
}


def driver_kind(cluster: Cluster) -> DriverKind:
    kind = DRIVERS.get(cluster.driver)
    if kind is None:
        raise Unsupported(
            f"cluster {cluster.name!r} (site {cluster.site!r}) uses driver {cluster.driver!r}, "
            f"which is not implemented; abdr has: {', '.join(DRIVERS)}")
    return kind


def get_driver(cluster: Cluster) -> ClusterDriver:
    """The driver for `cluster`, reached at its endpoint (local: the cluster directory,
    created if missing)."""
    return driver_kind(cluster).open(cluster.endpoint, cluster.name)


def probe_cluster(cluster: Cluster) -> tuple[str, dict[str, str]]:
    """Reach `cluster` the way its driver would, without opening it: (what answered, its
    versions). DriverError (or Unsupported) when it cannot."""
    return driver_kind(cluster).probe(cluster.endpoint, cluster.name)


def check_cluster(cluster: Cluster) -> None:
    """Refuse a cluster before the catalog knows it: an unknown driver, or an endpoint its
    driver cannot take (local: a directory that is neither an abdr cluster nor empty)."""
    driver_kind(cluster).check(cluster.endpoint, cluster.name)


__all__ = ["DRIVERS", "ClusterDriver", "DriverKind", "check_cluster", "get_driver", "join_cluster_id", "join_endpoint",
           "probe_cluster"]
