"""Translate a plan's Schedule + Window into a Temporal `ScheduleSpec`.

The window is folded into the spec (only due times inside it are listed), so Temporal never
starts a run outside the window; the workflow checks again at start (a paused or late
action) and enforces the window's end. Due minutes are grouped by the set of minutes they
have within an hour, so "every 25 min" (not a divisor of 60) still becomes a few exact
calendars instead of an approximation.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from temporalio.client import (
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
)

from models.schedule import Schedule, ScheduleKind, Window

# Short catch-up: after an outage, at most one missed run is taken, never a backlog.
CATCHUP_WINDOW = timedelta(minutes=10)


def _ranges(values: list[int]) -> list[ScheduleRange]:
    """Compress sorted ints into ScheduleRanges (runs of consecutive values)."""
    out: list[ScheduleRange] = []
    for v in sorted(set(values)):
        if out and out[-1].end == v - 1:
            out[-1] = ScheduleRange(out[-1].start, v)
        else:
            out.append(ScheduleRange(v, v))
    return out


def _day_fields(schedule: Schedule) -> dict[str, Any]:  # keyword arguments of ScheduleCalendarSpec
    if schedule.kind == ScheduleKind.WEEKLY:
        # Temporal: Sunday = 0; ours: Monday = 0.
        return {"day_of_week": _ranges([(w.iso + 1) % 7 for w in schedule.weekdays])}
    if schedule.kind == ScheduleKind.MONTHLY:
        return {"day_of_month": _ranges(schedule.days_of_month)}
    if schedule.kind == ScheduleKind.DAILY and schedule.interval > 1:
        return {"day_of_month": [ScheduleRange(1, 31, schedule.interval)]}
    return {}


def to_schedule_spec(schedule: Schedule, window: Window | None = None) -> ScheduleSpec:
    minutes = schedule.minutes_of_day(window)
    if not minutes:
        raise ValueError("the schedule has no due time inside the window")
    by_hour: dict[int, list[int]] = defaultdict(list)
    for m in minutes:
        by_hour[m // 60].append(m % 60)
    hours_by_minute_set: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for hour, mins in by_hour.items():
        hours_by_minute_set[tuple(mins)].append(hour)
    day_fields = _day_fields(schedule)
    calendars = [
        ScheduleCalendarSpec(
            second=[ScheduleRange(0)],
            minute=_ranges(list(mins)),
            hour=_ranges(hours),
            **day_fields,
        )
        for mins, hours in sorted(hours_by_minute_set.items(), key=lambda kv: min(kv[1]))
    ]
    return ScheduleSpec(calendars=calendars, time_zone_name=schedule.time_zone)


def skip_policy() -> SchedulePolicy:
    """Overlap SKIP: a due run is dropped while the previous one still runs (not queued)."""
    return SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=CATCHUP_WINDOW)
