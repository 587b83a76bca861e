"""Cluster drivers behind one protocol (drivers.base.ClusterDriver) and the backup
repository (drivers.repository). `get_driver` picks the implementation for a cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.base import ClusterDriver, DriverError, Unsupported

if TYPE_CHECKING:
    from models.inventory import Cluster


def get_driver(cluster: Cluster) -> ClusterDriver:
    """The driver for `cluster`. Local: `endpoint` is the cluster directory (created if
    missing). It must be given: the starter fills in its default (<data_dir>/clusters/<name>),
    and guessing a second default here would silently split one cluster in two."""
    if cluster.driver == "local":
        if not cluster.endpoint:
            raise DriverError(f"local cluster {cluster.name!r} has no endpoint: set it to the cluster's directory")
        from drivers.local import LocalDriver

        return LocalDriver(cluster.endpoint, cluster.name)
    raise Unsupported(
        f"cluster {cluster.name!r} (site {cluster.site!r}) uses driver {cluster.driver!r}, "
        "which is not implemented yet; only 'local' is available"
    )


__all__ = ["ClusterDriver", "get_driver"]
