"""A sliding window over a workflow's jobs: at most `size` in flight, the next one starts
as soon as one finishes (the shape of temporalio/samples-python's `batch_sliding_window`).
Without its continue-as-new: a plan's VMs fit in one history (2,000 pending children is
Temporal's cap per run); work that outgrows that needs pages and continue-as-new."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class SlidingWindow(Generic[T, R]):
    """Run `job` over `items`, in order, `size` at a time. A job must return its result,
    never raise (it turns its own failure or cancellation into a result); `stop()` cancels
    the jobs in flight and starts no more: those are `not_started(item)`."""

    def __init__(self, items: Sequence[T], size: int, job: Callable[[T], Awaitable[R]],
                 not_started: Callable[[T], R]) -> None:
        self._items, self._size, self._job, self._not_started = items, size, job, not_started
        self._results: dict[int, R] = {}
        self._next = 0
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._stopped = False
        self.idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> asyncio.Future[None]:
        """Fill the window (the first `size` jobs start now); `idle` resolves when none is left."""
        self._fill()
        return self.idle

    def stop(self) -> asyncio.Future[None]:
        """Cancel the jobs in flight and start no more; the future resolves once they have
        ended. A fresh one if `idle` was cancelled (the workflow's own cancellation reached
        the await on it), since the jobs' cleanup must still be waited for."""
        self._stopped = True
        if self.idle.cancelled():
            self.idle = asyncio.get_running_loop().create_future()
        for index in sorted(self._in_flight):
            self._in_flight[index].cancel()
        self._fill()  # nothing in flight: idle at once
        return self.idle

    def results(self) -> list[R]:
        """In the items' order (call once `idle` is done)."""
        return [self._results[i] if i in self._results else self._not_started(item)
                for i, item in enumerate(self._items)]

    def _fill(self) -> None:
        while not self._stopped and self._next < len(self._items) and len(self._in_flight) < self._size:
            index, self._next = self._next, self._next + 1
            task = asyncio.ensure_future(self._run(index))
            # A callback, not `finally`: a job cancelled before its first step never runs one.
            task.add_done_callback(partial(self._finished, index))
            self._in_flight[index] = task
        if not self._in_flight and not self.idle.done():
            self.idle.set_result(None)

    async def _run(self, index: int) -> None:
        self._results[index] = await self._job(self._items[index])

    def _finished(self, index: int, _: asyncio.Task[None]) -> None:
        del self._in_flight[index]
        self._fill()
