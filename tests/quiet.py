"""A plan schedule for tests that never fires while the suite runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def quiet_time() -> str:
    """HH:MM (UTC) twelve hours from now: a daily schedule the suite never reaches. A fixed
    time such as 03:00 fired in the middle of a test that ran at 03:00 UTC (CI3: "replication
    plan 'dr' is already running")."""
    return f"{datetime.now(UTC) + timedelta(hours=12):%H:%M}"
