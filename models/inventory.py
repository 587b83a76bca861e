"""Inventory vocabulary shared by drivers, activities and workflows: sites, clusters, VMs,
their disks and NICs, snapshots and extents. Plain pydantic v2 models (safe as Temporal
payloads); nothing here does I/O."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Names users give to things become ids, directory names and parts of workflow ids, so
# they are kept to a safe alphabet: letters, digits, '.', '_', '-', not starting with '.'.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
_NAME_RE = re.compile(NAME_PATTERN)
MAC_PATTERN = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"


def check_name(value: str, what: str = "name") -> str:
    """Validate a user-given name; the message says which rule failed."""
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is invalid: use 1-63 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return value


Name = Annotated[str, Field(pattern=NAME_PATTERN, min_length=1, max_length=63)]


class Strict(BaseModel):
    """Base for every domain model: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)


class PowerState(StrEnum):
    """VM status as AOC reports it."""

    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"
    UNKNOWN = "UNKNOWN"


class Consistency(StrEnum):
    CRASH_CONSISTENT = "CRASH_CONSISTENT"
    FILE_SYSTEM_CONSISTENT = "FILE_SYSTEM_CONSISTENT"


class ShutdownMode(StrEnum):
    """What happens to a source VM before failover (and how a VM is stopped in general)."""

    NONE = "NONE"
    SHUTDOWN = "SHUTDOWN"
    POWEROFF = "POWEROFF"
    SHUTDOWN_WITH_POWEROFF = "SHUTDOWN_WITH_POWEROFF"


class Extent(Strict):
    """A byte range of a disk."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    offset: int = Field(ge=0)
    length: int = Field(gt=0)

    @property
    def end(self) -> int:
        return self.offset + self.length


class DiskSpec(Strict):
    """One virtual disk of a VM. `name` is stable across backup and restore (disk0, ...)."""

    name: Name
    size_bytes: int = Field(gt=0, description="Virtual size; a multiple of 4096.")
    boot: bool = False
    thin: bool = Field(default=True, description="Thin: space is taken as data is written; thick: "
                       "all of it is reserved when the disk is created (a replica plan's thin_provisioning).")

    @field_validator("size_bytes")
    @classmethod
    def _aligned(cls, v: int) -> int:
        if v % 4096:
            raise ValueError(f"size_bytes {v} is not a multiple of 4096")
        return v


class NIC(Strict):
    """A virtual NIC attached to a network (a VLAN name on the cluster)."""

    name: Name
    network: Name
    mac: str = Field(pattern=MAC_PATTERN)
    ip: str | None = None


class VMConfig(Strict):
    """Everything needed to (re)create a VM except its disk contents."""

    name: Name
    vcpu: int = Field(default=1, ge=1, le=256)
    memory_mib: int = Field(default=1024, ge=64, le=4 * 1024 * 1024)
    disks: list[DiskSpec] = Field(default_factory=list)
    nics: list[NIC] = Field(default_factory=list)
    guest_tools: bool = Field(
        default=False, description="Guest agent present: file-system-consistent snapshots possible."
    )
    description: str = ""
    platform: dict[str, str] = Field(
        default_factory=dict,
        description="Hypervisor settings a restore must carry over, kept as given by drivers that have "
                    "no use for them (libvirt: kernel, initrd and cmdline of a direct kernel boot).")

    @model_validator(mode="after")
    def _unique_names(self) -> "VMConfig":
        for what, items in (("disk", self.disks), ("nic", self.nics)):
            names = [i.name for i in items]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{what} names must be unique within a VM; repeated: {sorted(dup)}")
        return self

    def disk(self, name: str) -> DiskSpec:
        for d in self.disks:
            if d.name == name:
                return d
        raise KeyError(f"VM {self.name!r} has no disk {name!r}")


class Site(Strict):
    """A failure domain managed by one AOC; each site runs its own abdr worker (its task queue
    is that site's backup/replication service)."""

    name: Name
    description: str = ""
    transport_url: str = Field(default="", description="Where the site's worker serves snapshot reads.")


# Every driver abdr has or plans: the Admin workflow refuses any other name before an activity
# runs. Which of them this build implements is the registry's (drivers.DRIVERS, a subset).
DRIVER_NAMES = ("local", "aoc", "libvirt")


class Cluster(Strict):
    """A cluster in a site, reached through a driver (`local`, `aoc`, `libvirt`)."""

    name: Name
    site: Name
    driver: str = Field(default="local", pattern=f"^({'|'.join(DRIVER_NAMES)})$")
    endpoint: str = Field(default="", description="Driver-specific: a directory, an AOC URL, a libvirt URI.")


class VM(Strict):
    """A VM as a driver reports it."""

    id: str
    cluster: Name
    config: VMConfig
    power_state: PowerState = PowerState.STOPPED

    @property
    def name(self) -> str:
        return self.config.name


class SnapshotInfo(Strict):
    """A VM snapshot (all disks at one instant)."""

    id: str
    vm_id: str
    name: str
    created_at: datetime
    consistency: Consistency = Consistency.CRASH_CONSISTENT
    config: VMConfig
