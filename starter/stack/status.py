"""`abdr status`: is Temporal reachable, which workers poll which queues, is the catalog
reachable and migrated, and (with --probe) does a health-check workflow run end to end, and
how does each site's worker reach that site's clusters (libvirt: the daemon's and the
hypervisor's versions)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from alembic.runtime.migration import MigrationContext
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, GetSystemInfoRequest
from temporalio.client import Client

from drivers.catalog.store import Catalog
from models.health import HealthCheckInput
from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue
from starter.runtime.connection import connect
from starter.runtime.settings import Settings
from starter.stack.demo import read_demo_state
from workflows.health import HealthCheckWorkflow


async def pollers(client: Client, queue: str, kind: TaskQueueType.ValueType) -> list[str]:
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue),
                                 task_queue_type=kind))
    return sorted({p.identity for p in resp.pollers})


def catalog_status(settings: Settings) -> dict:
    try:
        catalog = Catalog(settings.catalog_url, upgrade=False)
        try:
            catalog.ping()
            with catalog.engine.connect() as conn:
                revision = MigrationContext.configure(conn).get_current_revision()
            sites = [s.name for s in catalog.list_sites()] if revision else []
        finally:
            catalog.close()
        return {"ok": revision is not None, "url": _redact(settings.catalog_url), "schema_revision": revision,
                "sites": sites, **({} if revision else {"error": "catalog has no schema yet (run abdr up)"})}
    except Exception as e:
        return {"ok": False, "url": _redact(settings.catalog_url), "error": f"{type(e).__name__}: {e}"}


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def gather_status(settings: Settings, sites: list[str], probe: bool) -> dict:
    out: dict = {"temporal": {"address": settings.temporal_address, "namespace": settings.temporal_namespace,
                              "ui": settings.temporal_ui_url}}
    out["catalog"] = catalog_status(settings)
    if (demo := read_demo_state(settings)) is not None:
        out["demo"] = demo  # seeding until `abdr up` prints its banner: healthy is not ready yet
    try:
        client = await asyncio.wait_for(connect(settings), timeout=5)
        info = await client.workflow_service.get_system_info(GetSystemInfoRequest())
        out["temporal"].update(ok=True, server_version=info.server_version)
    except Exception as e:
        out["temporal"].update(ok=False, error=f"cannot reach Temporal: {type(e).__name__}: {e}".strip())
        out["healthy"] = False
        return out
    queues = [(WORKFLOW_TASK_QUEUE, "workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW)]
    queues += [(site_task_queue(s), "activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY) for s in sites]
    out["workers"] = [{"task_queue": q, "kind": kind, "pollers": await pollers(client, q, t)} for q, kind, t in queues]
    if probe:
        out["probe"] = [await run_probe(client, s) for s in sites]
    out["healthy"] = (out["temporal"]["ok"] and out["catalog"]["ok"] and all(w["pollers"] for w in out["workers"])
                      and all(p["ok"] for p in out.get("probe", [])))
    return out


async def run_probe(client: Client, site: str) -> dict:
    try:
        info = await client.execute_workflow(
            HealthCheckWorkflow.run, HealthCheckInput(site=site), id=f"health/{site}/{uuid.uuid4().hex[:8]}",
            task_queue=WORKFLOW_TASK_QUEUE, execution_timeout=timedelta(seconds=30),
            static_summary=f"health check of site {site}")
        # a cluster its worker cannot reach is unhealthy too: its backups would fail
        return {"site": site, "ok": info.catalog_ok and all(c.ok for c in info.cluster_health), **info.model_dump()}
    except Exception as e:
        return {"site": site, "ok": False, "error": f"{type(e).__name__}: {e}"}
