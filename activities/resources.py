"""What site activities are injected with: the catalog, drivers by cluster name, and
repositories by path, each opened once per worker and shared by its threads."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from drivers import get_driver
from drivers.base import ClusterDriver
from drivers.catalog.store import Catalog


class Resources:
    def __init__(self, catalog: Catalog, site: str, key_dir: Path | None = None) -> None:
        self.catalog = catalog
        self.site = site
        self.key_dir = key_dir  # keys of encrypted repositories (drivers/repository/keys.py)
        self._drivers: dict[str, ClusterDriver] = {}
        self._repos: dict[str, Any] = {}
        self._lock = threading.Lock()

    def driver(self, cluster: str) -> ClusterDriver:
        with self._lock:
            if cluster not in self._drivers:
                self._drivers[cluster] = get_driver(self.catalog.get_cluster(cluster))
            return self._drivers[cluster]

    def repository(self, path: str) -> Any:
        from drivers.repository import Repository

        with self._lock:
            if path not in self._repos:
                self._repos[path] = Repository.open(path, key_dir=self.key_dir)
            return self._repos[path]
