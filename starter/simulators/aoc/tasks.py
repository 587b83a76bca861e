"""The simulator's asynchronous task engine: a change is checked when it is asked for, its
resources locked (a second change of a locked resource answers ResourceLocked), and its
work runs later on a pool thread: PENDING for `pending_s`, EXECUTING for `executing_s`
plus the work, then SUCCESSED or FAILED with `error_code`/`error_message`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starter.simulators.aoc.errors import SimError, locked
from starter.simulators.aoc.faults import Faults
from starter.simulators.aoc.store import Store, new_id, now

log = logging.getLogger("abdr.aoc-simulator")
Work = Callable[[], None]


class Engine:
    def __init__(self, store: Store, faults: Faults, pending_s: float, executing_s: float) -> None:
        self.store, self.faults = store, faults
        self.pending_s, self.executing_s = pending_s, executing_s
        self.held: dict[str, str] = {}  # resource id -> task id
        self.pool = ThreadPoolExecutor(16, thread_name_prefix="aoc-sim-task")

    def check_free(self, *resources: str) -> None:
        """ResourceLocked if a running task holds one of them (call with store.lock held)."""
        for r in resources:
            if r in self.held:
                raise locked(r, self.held[r])

    def submit(self, op: str, resources: list[str], cluster_id: str | None, work: Work,
               on_fail: Work | None = None) -> dict[str, Any]:
        """Lock `resources`, record a PENDING task and run `work` later (call with store.lock
        held, after check_free). `on_fail` undoes what the request itself did."""
        task: dict[str, Any] = {"id": new_id(), "description": op, "key": op, "status": "PENDING", "progress": 0.0,
                "error_code": None, "error_message": None, "resource_id": resources[0] if resources else None,
                "resource_type": "VM", "cluster": {"id": cluster_id} if cluster_id else None,
                "local_created_at": now(), "started_at": None, "finished_at": None}
        for r in resources:
            self.held[r] = task["id"]
        self.store.put("tasks", task)
        self.pool.submit(self._run, op, task["id"], resources, work, on_fail)
        return task

    def _set(self, task_id: str, **fields: Any) -> None:
        with self.store.lock:
            task = dict(self.store.get("tasks", task_id) or {})
            task.update(fields)
            self.store.put("tasks", task)

    def _run(self, op: str, task_id: str, resources: list[str], work: Work, on_fail: Work | None) -> None:
        final: dict[str, Any] = {"status": "SUCCESSED", "progress": 1.0}
        try:
            time.sleep(self.pending_s)
            self._set(task_id, status="EXECUTING", started_at=now(), progress=0.1)
            if self.faults.take("task-stuck", op):
                log.info("simulated fault: task %s (%s) is stuck", task_id, op)
                self.faults.cleared.wait()
            fail = self.faults.take("task-fail", op)
            if fail:
                raise SimError(500, fail.error_code, fail.message)
            work()
            time.sleep(self.executing_s)
        except Exception as e:
            code = e.code if isinstance(e, SimError) else "InternalError"
            msg = e.message if isinstance(e, SimError) else f"{type(e).__name__}: {e}"
            if not isinstance(e, SimError):
                log.exception("task %s (%s) failed", task_id, op)
            if on_fail is not None:
                try:
                    on_fail()
                except Exception:
                    log.exception("undoing task %s failed", task_id)
            final = {"status": "FAILED", "error_code": code, "error_message": msg}
        with self.store.lock:  # the locks go with the task's end: whoever saw it end may go on
            for r in resources:
                if self.held.get(r) == task_id:
                    del self.held[r]
            self._set(task_id, finished_at=now(), **final)
