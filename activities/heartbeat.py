"""Heartbeats by elapsed time, carrying only durable progress.

Every activity of a worker built with `HeartbeatInterceptor` heartbeats every few seconds
while it runs, from a ticker on the worker's event loop, whatever the activity is doing (a
slow write, a snapshot merge, a throttled read). Each tick re-sends the activity's *last
durable* progress details: the details it resumed from until it reports newer ones, so a
tick never wipes a resume point. Long loops report their progress with `report(model)`
(or a `Checkpoint`, which makes the data durable first); a report is a plain store that any
thread may make, the ticker sends it.

Why not `activity.heartbeat` from a helper thread: the SDK keeps the activity context in a
contextvar (a new thread has none: "Not in activity context"), and in a sync activity each
call blocks on the event loop (`run_coroutine_threadsafe(...).result(10)`). The ticker calls
the SDK's outbound heartbeat on the loop itself, so the activity's threads never block on it.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ActivityOutboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

M = TypeVar("M", bound=BaseModel)

TICK_S = 2.0  # at most this long between heartbeats (the core throttles to 80% of the timeout)
CHECKPOINT_S = 2.0  # how often long loops make their progress durable and report it


def resume_details(model: type[M]) -> M | None:
    details = activity.info().heartbeat_details
    return model.model_validate(details[0]) if details else None


def tick_interval(heartbeat_timeout_s: float | None) -> float:
    """A third of the heartbeat timeout (two ticks may be late), at most TICK_S."""
    return min(TICK_S, heartbeat_timeout_s / 3) if heartbeat_timeout_s else TICK_S


@dataclass
class _State:
    details: Sequence[Any]
    sent: int = 0  # heartbeats the ticker sent
    reports: int = 0  # durable progress reports received


_state: contextvars.ContextVar[_State | None] = contextvars.ContextVar("abdr_heartbeat", default=None)


def _payload(details: BaseModel | Any) -> Any:
    return details.model_dump(mode="json") if isinstance(details, BaseModel) else details


class Progress:
    """The running activity's durable progress. Get it in the activity's thread; `report`
    may then be called from any thread."""

    def __init__(self) -> None:
        self._state = _state.get()
        # Without the interceptor (e.g. ActivityEnvironment) a report is sent at once,
        # inside the activity's context so it works from any thread.
        self._context = contextvars.copy_context() if self._state is None else None

    def report(self, details: BaseModel | Any) -> None:
        """`details` is what a retry resumes from: report only what is durable."""
        payload = _payload(details)
        if self._state is not None:
            self._state.details = (payload,)
            self._state.reports += 1
        else:
            assert self._context is not None
            self._context.run(activity.heartbeat, payload)


def report(details: BaseModel | Any) -> None:
    """Report durable progress from the activity's own thread."""
    Progress().report(details)


class Checkpoint:
    """Every `every_s` of elapsed time (and when forced): make the work so far durable,
    then report it. `make_durable` runs in the caller's thread before the report."""

    def __init__(self, make_durable: Callable[[], None] = lambda: None, every_s: float | None = None) -> None:
        self.make_durable = make_durable
        self.every_s = CHECKPOINT_S if every_s is None else every_s
        self.progress = Progress()
        self._last = time.monotonic()

    def __call__(self, details: BaseModel | Any, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < self.every_s:
            return False
        self.make_durable()
        self.progress.report(details)
        self._last = time.monotonic()
        return True


# Kept for callers written against the old helper: the data is already durable when they
# report (backup's staging journal), so no flush is needed; the ticker does the timing.
Heartbeater = Checkpoint


class _Outbound(ActivityOutboundInterceptor):
    """An explicit `activity.heartbeat(...)` becomes the new durable details too."""

    def __init__(self, next: ActivityOutboundInterceptor, state: _State) -> None:
        super().__init__(next)
        self.state = state

    def heartbeat(self, *details: Any) -> None:
        self.state.details = details
        super().heartbeat(*details)


class _Inbound(ActivityInboundInterceptor):
    def init(self, outbound: ActivityOutboundInterceptor) -> None:
        info = activity.info()
        self.state = _State(details=tuple(info.heartbeat_details))
        timeout = info.heartbeat_timeout
        self.interval = tick_interval(timeout.total_seconds() if timeout else None)
        self.sdk_outbound = outbound
        super().init(_Outbound(outbound, self.state))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.sdk_outbound.heartbeat(*self.state.details)  # on the loop: never blocks the activity
                self.state.sent += 1
            except Exception:  # noqa: BLE001 - one failed tick must not stop the next ones
                activity.logger.exception("heartbeat tick failed")

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        token = _state.set(self.state)  # copied into the executor thread by the SDK
        # A local activity has no heartbeat (its workflow task is its liveness): no ticker.
        ticker = None if activity.info().is_local else asyncio.create_task(self._tick())
        try:
            return await super().execute_activity(input)
        finally:
            if ticker is not None:
                ticker.cancel()
            _state.reset(token)


class HeartbeatInterceptor(Interceptor):
    """Install on every Worker (`interceptors=[HeartbeatInterceptor()]`)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next)
