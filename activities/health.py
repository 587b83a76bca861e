"""Health activities: a site worker proves it runs work and reaches the catalog, and says
how it reaches each of its site's clusters."""

from __future__ import annotations

import os
import socket
import threading
import time

from temporalio import activity

from drivers import probe_cluster
from drivers.catalog.store import Catalog
from models.activity_api import ClusterHealthApi, HealthApi
from models.health import ClusterHealth, HealthCheckInput, SiteWorkerInfo
from models.inventory import Cluster
from models.queues import site_task_queue

# A host that does not answer (a remote libvirt URI can hang in connect) is reported as such
# instead of holding the health check past its activity timeout.
PROBE_TIMEOUT_S = 5.0


def probe_all(clusters: list[Cluster], timeout_s: float = PROBE_TIMEOUT_S) -> list[ClusterHealth]:
    """Each cluster reached through its driver, all at once, each given until the deadline."""
    results: dict[str, ClusterHealth] = {}

    def run(c: Cluster) -> None:
        try:
            reached, versions = probe_cluster(c)
            results[c.name] = ClusterHealth(name=c.name, driver=c.driver, ok=True, reached=reached, versions=versions)
        except Exception as e:  # reported, not raised: the report is the point
            results[c.name] = ClusterHealth(name=c.name, driver=c.driver, ok=False, error=str(e))

    # daemon threads: one stuck in a connect that never returns must not keep the worker from exiting
    threads = [threading.Thread(target=run, args=(c,), name=f"probe-{c.name}", daemon=True) for c in clusters]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [results.get(c.name) or ClusterHealth(
        name=c.name, driver=c.driver, ok=False,
        error=f"no answer from {c.endpoint or 'its endpoint'} within {timeout_s:g}s") for c in clusters]


class HealthActivities(HealthApi):
    def __init__(self, catalog: Catalog, site: str) -> None:
        self.catalog = catalog
        self.site = site
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    @activity.defn(name="site_worker_info")
    def site_worker_info(self, req: HealthCheckInput) -> SiteWorkerInfo:
        try:
            self.catalog.ping()
            clusters = [c.name for c in self.catalog.list_clusters(site=self.site)]
            ok, error = True, ""
        except Exception as e:  # reported, not raised: the report is the point
            clusters, ok, error = [], False, f"{type(e).__name__}: {e}"
        return SiteWorkerInfo(site=self.site, task_queue=site_task_queue(self.site),
                              identity=self.identity,
                              catalog_ok=ok, catalog_error=error, clusters=clusters)


class ClusterHealthActivities(ClusterHealthApi):
    def __init__(self, catalog: Catalog, site: str) -> None:
        self.catalog = catalog
        self.site = site

    @activity.defn(name="cluster_health")
    def cluster_health(self, req: HealthCheckInput) -> list[ClusterHealth]:
        """Each of the site's clusters as this worker reaches it. Empty when the catalog does
        not answer (site_worker_info reports that)."""
        try:
            clusters = self.catalog.list_clusters(site=self.site)
        except Exception:
            return []
        return probe_all(clusters)
