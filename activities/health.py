"""Health activities: a site worker proves it runs work and reaches the catalog."""

from __future__ import annotations

import os
import socket

from temporalio import activity

from drivers.catalog.store import Catalog
from models.activity_api import HealthApi
from models.health import HealthCheckInput, SiteWorkerInfo
from models.queues import site_task_queue


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
