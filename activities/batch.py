"""The loop of a page's batch activity (issue 13): the no-change batches of backup
(activities/carry.py) and replication (activities/replica_carry.py) go through their VMs
one at a time, stop at the window's end, and heartbeat by elapsed time (the worker's
ticker) with only durable progress: the first `vms_done` VMs are recorded or left to a
child. A retry redoes the batch from its first VM: each VM's step is idempotent (its ids
are fixed in the workflow's input), so a VM done before is only recognised."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from temporalio import activity

from activities.heartbeat import Progress, resume_details
from models.jobs import CarryProgress

T = TypeVar("T")
R = TypeVar("R")


def each_vm(what: str, items: Sequence[T], one: Callable[[T], R | None], deadline: datetime | None = None) -> list[R]:
    """`one(item)` for each item in order (None: left to a child), none started after `deadline`."""
    resumed = resume_details(CarryProgress)
    if resumed is not None:
        activity.logger.info("%s resumed: %d of %d VMs were done", what, resumed.vms_done, len(items))
    progress = Progress()  # the ticker heartbeats it by elapsed time
    done: list[R] = []
    started = time.monotonic()
    for n, item in enumerate(items):
        if deadline is not None and datetime.now(UTC) >= deadline:
            break  # the window closed: the rest are left to the runbook (not started)
        out = one(item)
        if out is not None:
            done.append(out)
        progress.report(CarryProgress(vms_done=n + 1))  # VM n is recorded or left to a child: durable
    activity.logger.info("%s: %d of %d VMs unchanged, done in %.1f s", what, len(done), len(items),
                         time.monotonic() - started)
    return done
