"""Backup plans: what is protected, where it goes, when it runs, how long points live."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, model_validator

from models.inventory import Consistency, Name, Strict, repeated
from models.retention import Retention
from models.schedule import Schedule, Window


class BackupDelayOption(StrEnum):
    """What a job still running at the window's end does (ABDR's `backup_delay_option`)."""

    KEEP_GO_ON = "KEEP_GO_ON"
    STOP_BACKUP = "STOP_BACKUP"


class PlanStatus(StrEnum):
    WORKING = "WORKING"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"


class RunResult(StrEnum):
    NEVER_EXECUTE = "NEVER_EXECUTE"
    WAITING_EXECUTE = "WAITING_EXECUTE"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
    FAILED = "FAILED"
    PAUSED = "PAUSED"


class VMRef(Strict):
    """A VM named by its cluster and name (stable for users; ids are the driver's)."""

    cluster: Name
    vm: Name

    def __str__(self) -> str:
        return f"{self.cluster}/{self.vm}"


def check_unique_vms(vms: list[VMRef]) -> None:
    if not vms:
        raise ValueError("vms: a plan protects at least one VM")
    dup = repeated(str(v) for v in vms)
    if dup:
        raise ValueError(f"vms: each VM appears once in a plan; repeated: {dup}")


class BackupPlanSpec(Strict):
    """A backup plan as users declare it (`abdr backup-plan create`, `abdr apply`)."""

    name: Name
    description: str = ""
    vms: list[VMRef]
    backup_service: Name = "default"
    repository: Name
    schedule: Schedule = Field(description="When runs are due (incremental unless full is due).")
    full_schedule: Schedule | None = Field(
        default=None, description="Which due runs are full backups; None: only the first."
    )
    window: Window | None = None
    delay_option: BackupDelayOption = BackupDelayOption.STOP_BACKUP
    retention: Retention
    compression: bool = True
    consistency: Consistency = Consistency.CRASH_CONSISTENT

    def full_due_at(self, scheduled_at: datetime | None) -> bool:
        """Whether the run due at `scheduled_at` is a full backup by the full-backup schedule."""
        return bool(self.full_schedule and scheduled_at and self.full_schedule.is_due_at(scheduled_at))

    @model_validator(mode="after")
    def _check(self) -> "BackupPlanSpec":
        check_unique_vms(self.vms)
        if self.window is not None and not self.schedule.minutes_of_day(self.window):
            raise ValueError(
                f"schedule has no due time inside the window "
                f"{self.window.start:%H:%M}-{self.window.end:%H:%M}: the plan would never run"
            )
        if self.full_schedule is not None and self.full_schedule.time_zone != self.schedule.time_zone:
            raise ValueError("full_schedule.time_zone must equal schedule.time_zone")
        if (self.window is not None and self.full_schedule is not None
                and not self.full_schedule.minutes_of_day(self.window)):
            # Scheduled runs start only inside the window, so such a full schedule would never fire.
            raise ValueError(
                f"full_schedule has no due time inside the window "
                f"{self.window.start:%H:%M}-{self.window.end:%H:%M}: no full backup would ever run")
        return self
