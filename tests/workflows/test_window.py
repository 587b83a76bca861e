"""Unit tests of the sliding window (workflows/window.py) on a plain asyncio loop: it
needs nothing of Temporal but a running loop."""

from __future__ import annotations

import asyncio

from workflows.window import SlidingWindow


async def never_runs(item: str) -> str:
    raise AssertionError(f"{item} should not have run")


async def test_at_most_size_in_flight_the_next_starting_as_one_finishes() -> None:
    gates = {name: asyncio.Event() for name in "abcde"}
    running: list[str] = []
    started: list[str] = []

    async def job(name: str) -> str:
        running.append(name)
        started.append(name)
        await gates[name].wait()
        running.remove(name)
        return name.upper()

    window = SlidingWindow(list("abcde"), 2, job, lambda name: "never")
    idle = window.start()
    await asyncio.sleep(0)
    assert running == ["a", "b"]
    gates["b"].set()  # one slot frees: c starts, a still holds the other
    for _ in range(3):
        await asyncio.sleep(0)
    assert running == ["a", "c"] and started == ["a", "b", "c"]
    for name in "acde":
        gates[name].set()
    await idle
    assert window.results() == list("ABCDE") and started == list("abcde")


async def test_stop_cancels_those_in_flight_and_starts_no_more() -> None:
    async def job(name: str) -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return f"{name} stopped"
        return name

    window = SlidingWindow(list("abcd"), 2, job, lambda name: f"{name} not started")
    idle = window.start()
    await asyncio.sleep(0)
    window.stop()
    await idle
    assert window.results() == ["a stopped", "b stopped", "c not started", "d not started"]


async def test_a_job_stopped_before_its_first_step_still_frees_its_slot() -> None:
    window = SlidingWindow(["a"], 1, never_runs, lambda item: "not started")
    idle = window.start()
    window.stop()  # before the job ever ran
    await idle
    assert window.results() == ["not started"]


async def test_no_items_is_idle_at_once() -> None:
    window: SlidingWindow[str, str] = SlidingWindow([], 3, never_runs, str)
    await window.start()
    assert window.results() == []
