"""Inputs and results of the health check workflow that `abdr status` runs."""

from __future__ import annotations

from models.inventory import Strict


class HealthCheckInput(Strict):
    site: str


class SiteWorkerInfo(Strict):
    site: str
    task_queue: str
    identity: str
    catalog_ok: bool
    catalog_error: str = ""
    clusters: list[str] = []
