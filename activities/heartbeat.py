"""Typed heartbeats: progress goes out as a pydantic model and comes back on a retry (as a
plain dict, validated here) so a transfer resumes after its last confirmed unit."""

from __future__ import annotations

import time
from typing import TypeVar

from pydantic import BaseModel
from temporalio import activity

M = TypeVar("M", bound=BaseModel)


def resume_details(model: type[M]) -> M | None:
    details = activity.info().heartbeat_details
    return model.model_validate(details[0]) if details else None


class Heartbeater:
    """Heartbeat at most every `interval_s` (the server throttles anyway); the last details
    are what a retry resumes from, so only durable progress is ever reported."""

    def __init__(self, interval_s: float = 2.0) -> None:
        self.interval_s = interval_s
        self._last = 0.0

    def __call__(self, details: BaseModel, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval_s:
            activity.heartbeat(details.model_dump(mode="json"))
            self._last = now
