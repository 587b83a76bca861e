"""Plan schedules and windows, and the pure math over them.

A schedule says *when a plan is due*; a window says *when it may run*. Both are local
wall-clock notions in the plan's time zone. This module is pure (stdlib + pydantic): the
Temporal translation lives in `models.schedule_spec`, and both are checked against each
other and against the dev server's own `next_action_times` in the tests.

Semantics (ABDR's, with the differences written down):
- MINUTELY: every N minutes counted from 00:00 each day (ABDR: 15-59; we allow 5-59).
- HOURLY: every N hours (1-23) counted from 00:00 each day, at `minute` past the hour.
- DAILY: at one or more `times` (at least 15 min apart), every N days (1-30). N > 1 is
  counted cron-style from the 1st of each month (days 1, 1+N, 1+2N, ...).
- WEEKLY: on chosen `weekdays` at one or more `times`.
- MONTHLY: on chosen `days_of_month` (1-31; a day a month lacks is skipped) at `times`.
- A window [start, end) is half-open: a run due exactly at its end does not run. It may
  cross midnight; it is at least 15 minutes long.
- DST: a local time that does not exist (spring forward) does not fire; an ambiguous local
  time (fall back) fires once, at its first occurrence.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PlainSerializer, field_validator, model_validator

from models.inventory import Strict

MIN_MINUTELY_INTERVAL = 5  # ABDR's minimum RPO is 15 min; abdr allows 5 (documented).
MIN_TIMES_GAP_MIN = 15
MIN_WINDOW_MIN = 15
MINUTES_PER_DAY = 24 * 60


class ScheduleKind(StrEnum):
    MINUTELY = "MINUTELY"
    HOURLY = "HOURLY"
    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"


class Weekday(StrEnum):
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"

    @property
    def iso(self) -> int:
        """Monday = 0 ... Sunday = 6 (Python's `date.weekday()`)."""
        return list(Weekday).index(self)


def parse_hhmm(value: str | time) -> time:
    """HH:MM (HH:MM:00 accepted too); seconds are not part of a schedule."""
    parsed: time | None
    if isinstance(value, time):
        parsed = value
    else:
        try:
            parsed = time.fromisoformat(value) if isinstance(value, str) and len(value) in (5, 8) else None
        except ValueError:
            parsed = None
    if parsed is None or parsed.second or parsed.microsecond:
        raise ValueError(f"time {value!r} is not HH:MM (00:00-23:59)")
    return parsed


HHMM = Annotated[
    time,
    BeforeValidator(parse_hhmm),
    PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str, when_used="json"),
]


def _minute_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone {name!r} is not a known IANA time zone") from None


class Window(Strict):
    """Local time-of-day range a plan may run in; `end` is exclusive; may cross midnight."""

    start: HHMM
    end: HHMM

    @model_validator(mode="after")
    def _long_enough(self) -> "Window":
        if self.length_minutes < MIN_WINDOW_MIN:
            raise ValueError(
                f"window {self.start:%H:%M}-{self.end:%H:%M} is {self.length_minutes} min long; "
                f"a window must be at least {MIN_WINDOW_MIN} minutes"
            )
        return self

    @property
    def length_minutes(self) -> int:
        return (_minute_of_day(self.end) - _minute_of_day(self.start)) % MINUTES_PER_DAY

    def contains_minute(self, minute_of_day: int) -> bool:
        offset = (minute_of_day - _minute_of_day(self.start)) % MINUTES_PER_DAY
        return offset < self.length_minutes

    def contains(self, local: datetime) -> bool:
        """Whether a local wall-clock instant (with seconds) lies in [start, end)."""
        seconds = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        start = _minute_of_day(self.start) * 60
        return (seconds - start) % (MINUTES_PER_DAY * 60) < self.length_minutes * 60


class Schedule(Strict):
    """When a plan is due. Fields unused by a kind must stay at their defaults."""

    kind: ScheduleKind
    interval: int = Field(default=1, description="N of 'every N minutes/hours/days'.")
    minute: int = Field(default=0, ge=0, le=59, description="HOURLY: minute past the hour.")
    times: list[HHMM] = Field(default_factory=list, description="DAILY/WEEKLY/MONTHLY: HH:MM.")
    weekdays: list[Weekday] = Field(default_factory=list)
    days_of_month: list[int] = Field(default_factory=list)
    time_zone: str = "UTC"

    @field_validator("times")
    @classmethod
    def _sort_times(cls, v: list[time]) -> list[time]:
        return sorted(v)

    @field_validator("time_zone")
    @classmethod
    def _check_zone(cls, v: str) -> str:
        _zone(v)
        return v

    @model_validator(mode="after")
    def _check_kind(self) -> "Schedule":
        k = self.kind
        ranges = {
            ScheduleKind.MINUTELY: (MIN_MINUTELY_INTERVAL, 59),
            ScheduleKind.HOURLY: (1, 23),
            ScheduleKind.DAILY: (1, 30),
        }
        if k in ranges:
            lo, hi = ranges[k]
            if not lo <= self.interval <= hi:
                raise ValueError(f"interval {self.interval} is out of range for {k}: {lo}-{hi}")
        elif self.interval != 1:
            raise ValueError(f"interval is not used by {k}; leave it at 1")
        needs_times = k in (ScheduleKind.DAILY, ScheduleKind.WEEKLY, ScheduleKind.MONTHLY)
        if needs_times and not self.times:
            raise ValueError(f"times: {k} needs at least one HH:MM time")
        if not needs_times and self.times:
            raise ValueError(f"times are not used by {k}")
        minutes = [_minute_of_day(t) for t in self.times]
        if len(set(minutes)) != len(minutes):
            raise ValueError("times must not repeat")
        gaps = [b - a for a, b in zip(minutes, minutes[1:])]
        if len(minutes) > 1:
            gaps.append(minutes[0] + MINUTES_PER_DAY - minutes[-1])
        if any(g < MIN_TIMES_GAP_MIN for g in gaps):
            raise ValueError(f"times must be at least {MIN_TIMES_GAP_MIN} minutes apart")
        if (k == ScheduleKind.WEEKLY) != bool(self.weekdays):
            raise ValueError("weekdays: WEEKLY needs at least one weekday; other kinds take none")
        if (k == ScheduleKind.MONTHLY) != bool(self.days_of_month):
            raise ValueError("days_of_month: MONTHLY needs at least one day; other kinds take none")
        bad = [d for d in self.days_of_month if not 1 <= d <= 31]
        if bad:
            raise ValueError(f"days_of_month {bad} out of range 1-31")
        if k != ScheduleKind.HOURLY and self.minute:
            raise ValueError(f"minute is only used by HOURLY, not {k}")
        return self

    # -- pure math -----------------------------------------------------------------

    def minutes_of_day(self, window: Window | None = None) -> list[int]:
        """Local minutes-of-day at which the plan is due on a due day, window applied."""
        due: Iterable[int]
        if self.kind == ScheduleKind.MINUTELY:
            due = range(0, MINUTES_PER_DAY, self.interval)
        elif self.kind == ScheduleKind.HOURLY:
            due = range(self.minute, MINUTES_PER_DAY, self.interval * 60)
        else:
            due = [_minute_of_day(t) for t in self.times]
        return sorted(m for m in due if window is None or window.contains_minute(m))

    def is_due_day(self, day: date) -> bool:
        if self.kind == ScheduleKind.DAILY:
            return (day.day - 1) % self.interval == 0
        if self.kind == ScheduleKind.WEEKLY:
            return day.weekday() in {w.iso for w in self.weekdays}
        if self.kind == ScheduleKind.MONTHLY:
            return day.day in self.days_of_month
        return True

    def is_due_at(self, at: datetime) -> bool:
        """Whether `at` (tz-aware) is one of this schedule's due instants (to the minute)."""
        local = at.astimezone(_zone(self.time_zone))
        return self.is_due_day(local.date()) and local.hour * 60 + local.minute in self.minutes_of_day()

    def next_due(self, after: datetime, count: int, window: Window | None = None) -> list[datetime]:
        """The next `count` due instants strictly after `after` (tz-aware), in UTC."""
        if after.tzinfo is None:
            raise ValueError("after must be timezone-aware")
        zone = _zone(self.time_zone)
        minutes = self.minutes_of_day(window)
        out: list[datetime] = []
        if not minutes:
            return out
        day = after.astimezone(zone).date() - timedelta(days=1)
        # A due day occurs at least once in any 31-day stretch for every kind (MONTHLY with
        # only day 31 is the sparsest: within 62 days); bound the walk so it terminates.
        for _ in range(count * 62 + 400):
            if self.is_due_day(day):
                for m in minutes:
                    t = _local_instant(day, m, zone)
                    if t is not None and t > after:
                        out.append(t)
                        if len(out) == count:
                            return out
            day += timedelta(days=1)
        return out


def _local_instant(day: date, minute_of_day: int, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall-clock time, None if it does not exist (DST gap)."""
    local = datetime.combine(day, time(minute_of_day // 60, minute_of_day % 60), zone)
    utc = local.astimezone(timezone.utc)
    if utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        return None  # spring-forward gap: this wall-clock time is skipped
    return utc  # fold=0: an ambiguous time resolves to its first occurrence


def window_close(window: Window, time_zone: str, at: datetime) -> datetime | None:
    """If `at` is inside the window, the instant the window closes; else None."""
    zone = _zone(time_zone)
    local = at.astimezone(zone)
    if not window.contains(local):
        return None
    start_min = _minute_of_day(window.start)
    seconds_into = (local.hour * 3600 + local.minute * 60 + local.second - start_min * 60) % 86400
    opened = local.replace(tzinfo=None) - timedelta(seconds=seconds_into, microseconds=local.microsecond)
    closes_local = opened + timedelta(minutes=window.length_minutes)
    return closes_local.replace(tzinfo=zone).astimezone(timezone.utc)
