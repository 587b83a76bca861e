"""Inputs and results of the health check workflow that `abdr status` runs."""

from __future__ import annotations

from models.inventory import Strict


class HealthCheckInput(Strict):
    site: str


class ClusterHealth(Strict):
    """One cluster as its site's worker reaches it (`abdr status`)."""

    name: str
    driver: str
    ok: bool
    reached: str = ""  # what answered: a libvirt URI and host, a local directory
    versions: dict[str, str] = {}  # libvirt: {"libvirt": daemon's, "hypervisor": e.g. "QEMU 7.2.22"}
    error: str = ""


class SiteWorkerInfo(Strict):
    site: str
    task_queue: str
    identity: str
    catalog_ok: bool
    catalog_error: str = ""
    clusters: list[str] = []
    cluster_health: list[ClusterHealth] = []  # empty in runs before the health check probed clusters
