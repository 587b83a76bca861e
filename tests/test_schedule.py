"""Schedule and window math: properties of the pure function, the Temporal translation
checked against it, and both checked against the dev server's own next_action_times."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio.client import Schedule as TSchedule
from temporalio.client import ScheduleActionStartWorkflow, ScheduleCalendarSpec, ScheduleState
from temporalio.testing import WorkflowEnvironment

from models.schedule import Schedule, ScheduleKind, Weekday, Window, window_close
from models.schedule_spec import skip_policy, to_schedule_spec

UTC = timezone.utc
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


@st.composite
def windows(draw: st.DrawFn) -> Window | None:
    if draw(st.booleans()):
        return None
    start = draw(st.integers(0, 1439))
    length = draw(st.integers(15, 1439))
    end = (start + length) % 1440
    return Window(start=time(start // 60, start % 60), end=time(end // 60, end % 60))


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    kind = draw(st.sampled_from(list(ScheduleKind)))
    zone = draw(st.sampled_from(ZONES))
    if kind == ScheduleKind.MINUTELY:
        return Schedule(kind=kind, interval=draw(st.integers(5, 59)), time_zone=zone)
    if kind == ScheduleKind.HOURLY:
        return Schedule(kind=kind, interval=draw(st.integers(1, 23)), minute=draw(st.integers(0, 59)), time_zone=zone)
    slots = draw(st.lists(st.integers(0, 1439 // 15 - 1), min_size=1, max_size=4, unique=True))
    times = [f"{(s * 15 + 7) // 60:02d}:{(s * 15 + 7) % 60:02d}" for s in slots]
    if kind == ScheduleKind.DAILY:
        return Schedule(kind=kind, interval=draw(st.integers(1, 30)), times=times, time_zone=zone)
    if kind == ScheduleKind.WEEKLY:
        days = draw(st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True))
        return Schedule(kind=kind, times=times, weekdays=days, time_zone=zone)
    dom = draw(st.lists(st.integers(1, 31), min_size=1, max_size=5, unique=True))
    return Schedule(kind=kind, times=times, days_of_month=dom, time_zone=zone)


instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(schedules(), windows(), instants)
def test_due_times_are_increasing_inside_window_and_on_due_days(s: Schedule, w: Window | None, after: datetime) -> None:
    if w is not None and not s.minutes_of_day(w):
        return
    due = s.next_due(after, 12, w)
    assert len(due) == 12
    assert all(a < b for a, b in zip(due, due[1:]))
    assert due[0] > after
    zone = ZoneInfo(s.time_zone)
    for t in due:
        local = t.astimezone(zone)
        assert s.is_due_day(local.date())
        assert local.hour * 60 + local.minute in s.minutes_of_day(w)
        if w is not None:
            assert w.contains(local)


@settings(max_examples=100, deadline=None)
@given(schedules(), instants)
def test_no_due_time_is_missed_between_consecutive_results(s: Schedule, after: datetime) -> None:
    """Walking minute by minute between two results finds no other due local time."""
    due = s.next_due(after, 2)
    zone = ZoneInfo(s.time_zone)
    minutes = set(s.minutes_of_day())
    t = due[0] + timedelta(minutes=1)
    while t < due[1]:
        local = t.astimezone(zone)
        exists = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None)
        first = local.fold == 0
        assert not (exists and first and s.is_due_day(local.date()) and local.hour * 60 + local.minute in minutes
                    and local.second == 0 and t.second == 0), f"missed {local}"
        t += timedelta(minutes=1)


def test_window_across_midnight() -> None:
    w = Window(start="22:00", end="06:00")
    assert w.length_minutes == 480
    assert w.contains_minute(22 * 60) and w.contains_minute(0) and w.contains_minute(5 * 60 + 59)
    assert not w.contains_minute(6 * 60) and not w.contains_minute(21 * 60 + 59) and not w.contains_minute(12 * 60)


def test_run_due_exactly_at_window_end_does_not_run() -> None:
    s = Schedule(kind=ScheduleKind.MINUTELY, interval=15)
    w = Window(start="22:00", end="06:00")
    due = s.next_due(datetime(2026, 3, 2, 5, 0, tzinfo=UTC), 5, w)
    assert [d.strftime("%H:%M") for d in due] == ["05:15", "05:30", "05:45", "22:00", "22:15"]


def test_window_close_instant() -> None:
    w = Window(start="22:00", end="06:00")
    at = datetime(2026, 3, 2, 23, 10, 5, tzinfo=UTC)
    assert window_close(w, "UTC", at) == datetime(2026, 3, 3, 6, 0, tzinfo=UTC)
    assert window_close(w, "UTC", datetime(2026, 3, 3, 6, 0, tzinfo=UTC)) is None
    assert window_close(w, "UTC", datetime(2026, 3, 3, 12, 0, tzinfo=UTC)) is None


def test_dst_spring_forward_skips_missing_local_time() -> None:
    # Europe/Berlin: 2026-03-29 02:00 -> 03:00; 02:30 does not exist that day.
    s = Schedule(kind=ScheduleKind.DAILY, times=["02:30"], time_zone="Europe/Berlin")
    due = s.next_due(datetime(2026, 3, 27, 12, tzinfo=UTC), 3)
    local = [d.astimezone(ZoneInfo("Europe/Berlin")).strftime("%m-%d %H:%M") for d in due]
    assert local == ["03-28 02:30", "03-30 02:30", "03-31 02:30"]


def test_dst_fall_back_fires_once_at_first_occurrence() -> None:
    # Europe/Berlin: 2026-10-25 03:00 -> 02:00; 02:30 happens twice.
    s = Schedule(kind=ScheduleKind.DAILY, times=["02:30"], time_zone="Europe/Berlin")
    due = s.next_due(datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert due[0] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST (UTC+2)
    assert due[1] == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)  # 02:30 CET (UTC+1)


def test_dst_interval_schedules_follow_local_clock() -> None:
    s = Schedule(kind=ScheduleKind.HOURLY, interval=2, time_zone="America/New_York")
    due = s.next_due(datetime(2026, 3, 8, 4, 0, tzinfo=UTC), 3)  # 23:00 EST on 03-07
    local = [d.astimezone(ZoneInfo("America/New_York")).strftime("%d %H:%M") for d in due]
    assert local == ["08 00:00", "08 04:00", "08 06:00"]  # 02:00 does not exist on 03-08


# -- the Temporal translation --------------------------------------------------------

def _calendar_matches(cal: ScheduleCalendarSpec, local: datetime) -> bool:
    def inside(value: int, ranges: list) -> bool:
        return any(r.start <= value <= max(r.start, r.end) and (value - r.start) % (r.step or 1) == 0 for r in ranges)

    return (inside(local.second, cal.second) and inside(local.minute, cal.minute) and inside(local.hour, cal.hour)
            and inside(local.day, cal.day_of_month) and inside(local.month, cal.month)
            and inside((local.weekday() + 1) % 7, cal.day_of_week))


@settings(max_examples=60, deadline=None)
@given(schedules(), windows(), st.dates(min_value=datetime(2025, 1, 1).date(), max_value=datetime(2028, 1, 1).date()))
def test_spec_calendars_match_exactly_the_pure_due_times(s: Schedule, w: Window | None, day) -> None:
    if w is not None and not s.minutes_of_day(w):
        with pytest.raises(ValueError, match="no due time inside the window"):
            to_schedule_spec(s, w)
        return
    spec = to_schedule_spec(s, w)
    assert spec.time_zone_name == s.time_zone
    expected = set(s.minutes_of_day(w)) if s.is_due_day(day) else set()
    got = {m for m in range(1440)
           if any(_calendar_matches(c, datetime.combine(day, time(m // 60, m % 60))) for c in spec.calendars)}
    assert got == expected


# -- against the real server ------------------------------------------------------------

DEV_SERVER_CASES = {
    "every-15-min-in-22-06-window": (Schedule(kind=ScheduleKind.MINUTELY, interval=15), Window(start="22:00", end="06:00")),
    "daily-0100-and-1300": (Schedule(kind=ScheduleKind.DAILY, times=["01:00", "13:00"]), None),
    "weekly-mon-thu-0230-new-york": (
        Schedule(kind=ScheduleKind.WEEKLY, times=["02:30"], weekdays=[Weekday.MON, Weekday.THU],
                 time_zone="America/New_York"), None),
    "every-2-hours": (Schedule(kind=ScheduleKind.HOURLY, interval=2), None),
    "every-25-min-berlin-window": (Schedule(kind=ScheduleKind.MINUTELY, interval=25, time_zone="Europe/Berlin"),
                                   Window(start="08:10", end="17:40")),
}


@pytest.mark.parametrize("case", sorted(DEV_SERVER_CASES))
async def test_dev_server_next_action_times_equal_pure_function(temporal_env: WorkflowEnvironment, case: str) -> None:
    schedule, window = DEV_SERVER_CASES[case]
    client = temporal_env.client
    before = datetime.now(UTC)
    handle = await client.create_schedule(
        f"test-spec-{case}-{uuid.uuid4().hex[:6]}",
        TSchedule(action=ScheduleActionStartWorkflow("NoSuchWorkflow", id="never", task_queue="never"),
                  spec=to_schedule_spec(schedule, window), policy=skip_policy(),
                  state=ScheduleState(paused=True)),
    )
    try:
        desc = await handle.describe()
        server = [t.astimezone(UTC) for t in desc.info.next_action_times]
        assert len(server) >= 5
        assert server == schedule.next_due(server[0] - timedelta(seconds=1), len(server), window)
        assert server[0] in schedule.next_due(before, 2, window)
    finally:
        await handle.delete()
