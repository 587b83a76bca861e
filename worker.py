"""abdr worker: the orchestration worker (workflows) and/or one site's activity worker
(that site's backup/replication service).

    python worker.py                    # both roles for ABDR_SITE (default "default")
    python worker.py --site dr --no-workflows   # only site "dr"'s activity worker

SIGINT/SIGTERM shut down gracefully: polling stops at once, in-flight activities get
`ABDR_SHUTDOWN_GRACE_S` to finish or heartbeat their progress for the next worker.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

import workflows
from activities.admin import AdminActivities
from activities.backup import BackupActivities
from activities.catalog import CatalogActivities
from activities.health import ClusterHealthActivities, HealthActivities
from activities.heartbeat import HeartbeatInterceptor
from activities.registry import activities_of
from activities.replication import ReplicationActivities
from activities.replication_catalog import ReplicationCatalogActivities
from activities.resources import Resources
from activities.restore import RestoreActivities
from activities.site_admin import SiteAdminActivities
from drivers.catalog.store import Catalog
from drivers.transport.server import TransportServer, make_app
from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue
from starter.runtime.connection import connect, metrics_runtime
from starter.runtime.logging import configure_logging
from starter.runtime.settings import Settings, get_settings

log = structlog.get_logger("abdr.worker")
ACTIVITY_THREADS = 16


def site_activities(catalog: Catalog, site: str, settings: Settings) -> list[Callable[..., Any]]:
    """Every activity a site worker runs, bound to its injected catalog and drivers."""
    res = Resources(catalog, site, key_dir=settings.repository_keys())
    backup = BackupActivities(res)
    rep = ReplicationActivities(res, settings.transport_secret(),
                                str(settings.transport_ca) if settings.transport_ca else None)
    impls = [backup, RestoreActivities(res), SiteAdminActivities(res, backup), rep, HealthActivities(catalog, site),
             ClusterHealthActivities(catalog, site)]
    return [fn for impl in impls for fn in activities_of(impl)]


def catalog_activities(catalog: Catalog, client: Client) -> list[Callable[..., Any]]:
    """Activities of the workflow queue: the catalog's, reachable while any site is down."""
    impls = [CatalogActivities(catalog), AdminActivities(catalog, client), ReplicationCatalogActivities(catalog, client)]
    return [fn for impl in impls for fn in activities_of(impl)]


def start_transport(settings: Settings, catalog: Catalog, site: str) -> TransportServer:
    """Serve this site's snapshot reads to the other sites' workers and announce where."""
    res = Resources(catalog, site)
    host, _, port = settings.transport_listen.rpartition(":")
    app = make_app(res.driver, settings.transport_secret(), site)
    server = TransportServer(app, host, int(port), settings.transport_tls_cert, settings.transport_tls_key).start()
    bound = server.server.servers[0].sockets[0].getsockname()[1]
    scheme = "https" if settings.transport_tls_cert else "http"
    url = settings.transport_url or f"{scheme}://{host}:{bound}"
    catalog.set_site_transport(site, url)
    log.info("transport serving", site=site, url=url)
    return server


def build_workers(client: Client, settings: Settings, catalog: Catalog, *, site: str | None,
                  run_workflows: bool, executor: ThreadPoolExecutor) -> list[Worker]:
    grace = timedelta(seconds=settings.shutdown_grace_s)
    out: list[Worker] = []
    if run_workflows:
        out.append(Worker(client, task_queue=WORKFLOW_TASK_QUEUE, workflows=workflows.ALL,
                          activities=catalog_activities(catalog, client), activity_executor=executor,
                          graceful_shutdown_timeout=grace, interceptors=[HeartbeatInterceptor()]))
    if site:
        out.append(Worker(client, task_queue=site_task_queue(site), activities=site_activities(catalog, site, settings),
                          activity_executor=executor, max_concurrent_activities=ACTIVITY_THREADS,
                          graceful_shutdown_timeout=grace, interceptors=[HeartbeatInterceptor()]))
    return out


async def run_workers(settings: Settings, *, site: str | None, run_workflows: bool,
                      stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
    """Run until `stop` is set, then shut down gracefully."""
    catalog = Catalog(settings.catalog_url)
    runtime = metrics_runtime(settings.metrics_address) if settings.metrics_address else None
    client = await connect(settings, wait_s=30, runtime=runtime)
    async with AsyncExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix="abdr-act"))
        if site:
            transport = start_transport(settings, catalog, site)
            stack.callback(transport.stop)
        workers = build_workers(client, settings, catalog, site=site, run_workflows=run_workflows,
                                executor=executor)
        for w in workers:
            await stack.enter_async_context(w)
        log.info("workers running", queues=[w.task_queue for w in workers], address=settings.temporal_address)
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("shutting down workers", grace_s=settings.shutdown_grace_s)
    catalog.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run abdr's Temporal workers.")
    parser.add_argument("--site", help="serve this site's activity queue (default ABDR_SITE)")
    parser.add_argument("--no-site", action="store_true", help="no activity worker")
    parser.add_argument("--no-workflows", action="store_true", help="no workflow worker")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    site = None if args.no_site else (args.site or settings.site)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_workers(settings, site=site, run_workflows=not args.no_workflows, stop=stop)

    asyncio.run(_run())


if __name__ == "__main__":
    main()
