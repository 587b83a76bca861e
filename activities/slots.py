"""A service's limits across every plan and manual run: a transfer activity holds one of its
service's slots (a lease in the catalog) while it moves data, and waits for one otherwise.

Why a catalog lease and not Temporal: a worker's `max_concurrent_activities` counts one
process (two workers of a site double it), every activity kind at once, and changes only
with a restart; a workflow-side semaphore sees one plan. The lease counts what the service
really runs, wherever its workers are, and a limit changed in the catalog applies to the
next acquisition. A killed worker's lease expires after LEASE_TTL_S; a retried activity
(same workflow, run and activity id) takes its own lease over instead of a second slot.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from temporalio import activity

from drivers.catalog.store import Catalog, NotFound
from models.services import BackupService, ReplicationService, TransferKind, slot_limit

LEASE_TTL_S = 30.0  # a dead holder's slot is free again this long after its last renewal
POLL_S = 0.5  # how often a waiting transfer asks for a slot
log = logging.getLogger("abdr.slots")
F = TypeVar("F", bound=Callable[..., Any])


class SlotRequest(NamedTuple):
    kind: TransferKind
    cluster: str  # where the transfer writes or reads: its site's service holds the limit
    plan: str | None = None  # a backup plan names its backup service


def service_of(catalog: Catalog, req: SlotRequest) -> BackupService | ReplicationService:
    """The service whose limit the transfer counts against, as the run's resolver picks it."""
    site = catalog.get_cluster(req.cluster).site
    if req.kind in (TransferKind.BACKUP, TransferKind.RESTORE):
        if req.kind == TransferKind.BACKUP and req.plan:
            try:
                return catalog.backup_service(catalog.get_backup_plan(req.plan).backup_service, site)
            except NotFound:  # the plan was deleted while its run goes on
                pass
        return catalog.site_backup_service(site)
    return catalog.site_replication_service(site)


class _Renewer(threading.Thread):
    """Keeps the lease alive while its holder runs (a killed process stops renewing)."""

    def __init__(self, renew: Callable[[], bool], every_s: float) -> None:
        super().__init__(name="abdr-slot-lease", daemon=True)
        self.renew, self.every_s, self.stopped = renew, every_s, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            try:
                if not self.renew():
                    log.warning("slot lease lost (a newer attempt holds it, or it expired)")
                    return
            except Exception:  # the catalog is briefly unreachable: the next renewal may work
                log.exception("slot lease renewal failed")


@contextmanager
def service_slot(catalog: Catalog, kind: TransferKind, service: str, limit: int,
                 ttl_s: float = LEASE_TTL_S) -> Iterator[int]:
    """Hold one of `service`'s `limit` slots of `kind` for the running activity."""
    info = activity.info()
    holder = f"{info.workflow_id}/{info.workflow_run_id}/{info.activity_id}"
    resume_point = tuple(info.heartbeat_details)  # re-sent unchanged while waiting: nothing is lost
    waited = False
    while (slot := catalog.acquire_slot(kind, service, limit, holder, info.attempt, ttl_s)) is None:
        if not waited:
            activity.logger.info("waiting for a %s slot of service %s (limit %d)", kind, service, limit)
            waited = True
        activity.heartbeat(*resume_point)  # also delivers a cancellation while waiting
        time.sleep(POLL_S)
    renewer = _Renewer(lambda: catalog.renew_slot(kind, service, holder, info.attempt, ttl_s), ttl_s / 3)
    renewer.start()
    try:
        yield slot
    finally:
        renewer.stopped.set()
        catalog.release_slot(kind, service, holder, info.attempt)


def holds_slot(request: Callable[[Any], SlotRequest]) -> Callable[[F], F]:
    """Decorator of a transfer activity method (`self.res.catalog`, one input): the body runs
    holding a slot of the service `request(input)` names."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, inp: Any) -> Any:
            req = request(inp)
            catalog = self.res.catalog
            service = service_of(catalog, req)
            with service_slot(catalog, req.kind, service.name, slot_limit(service, req.kind)):
                return fn(self, inp)

        return wrapper  # type: ignore[return-value]

    return wrap
