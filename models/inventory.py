"""Inventory vocabulary shared by drivers, activities and workflows: sites, clusters, VMs,
their disks and NICs, snapshots and extents. Plain pydantic v2 models (safe as Temporal
payloads); nothing here does I/O."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Names users give to things become ids, directory names and parts of workflow ids, so
# they are kept to a safe alphabet. The rules are said in words (NAME_RULES) wherever a name is
# refused; NAME_PATTERN is the same rule for the OpenAPI document and JSON schemas.
MAX_NAME = 63
NAME_PATTERN = rf"^[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_NAME - 1}}}$"
_NAME_RE = re.compile(NAME_PATTERN)
NAME_RULES = (f"a name uses letters, digits, '.', '_' or '-', starts with a letter, digit or '_', "
              f"and has 1-{MAX_NAME} characters")
MAC_PATTERN = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"


def name_problem(value: str) -> str | None:
    """What is wrong with `value` as a name, in words, naming the rule it breaks and then all
    of them (`NAME_RULES`); None for a good name. The one wording of every refusal of a name:
    the models' `Name`, `check_name`, the drivers' `validate_name`, the CLI's name arguments."""
    if _NAME_RE.fullmatch(value):  # fullmatch: '$' alone would let a trailing newline through
        return None
    if value == "":
        why = "is empty"
    elif len(value) > MAX_NAME:
        why = f"is {len(value)} characters long"
        value = value[:20] + "..."
    elif "/" in value or "\\" in value or value in (".", ".."):
        why = "looks like a path ('/', '\\' or '..')"
    elif value.startswith((".", "-")):
        why = f"starts with {value[0]!r}"
    else:
        bad = "".join(sorted({c for c in value if not (c.isascii() and (c.isalnum() or c in "_.-"))}))
        why = f"contains {bad!r}"
    return f"{value!r} {why}; {NAME_RULES}" if value else f"{why}; {NAME_RULES}"


def check_name(value: str, what: str = "name") -> str:
    """Validate a user-given name; ValueError says which rule failed (`name_problem`)."""
    if (why := name_problem(value)) is not None:
        raise ValueError(f"{what} {why}")
    return value


def _valid_name(value: str) -> str:
    if (why := name_problem(value)) is not None:
        # A custom error: its message is the words alone (no "Value error, " before them).
        raise PydanticCustomError("invalid_name", "{why}", {"why": why})
    return value


# The schema still states the pattern (clients and the fuzzer read it); validation is
# _valid_name, so a refusal reads as words rather than as the regular expression.
Name = Annotated[str, AfterValidator(_valid_name),
                 Field(json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": MAX_NAME})]


def repeated(items: Iterable[str]) -> list[str]:
    """The items that appear more than once, sorted (linear: a plan may list 10,000 VMs)."""
    return sorted(item for item, n in Counter(items).items() if n > 1)


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
            dup = repeated(i.name for i in items)
            if dup:
                raise ValueError(f"{what} names must be unique within a VM; repeated: {dup}")
        return self

    def disk(self, name: str) -> DiskSpec:
        for d in self.disks:
            if d.name == name:
                return d
        raise KeyError(f"VM {self.name!r} has no disk {name!r}")


class SiteSpec(Strict):
    """A site as a user adds it (`POST /v1/sites`, `abdr site add`)."""

    name: Name
    description: str = ""


class Site(SiteSpec):
    """A failure domain managed by one AOC; each site runs its own abdr worker (its task queue
    is that site's backup/replication service)."""

    transport_url: str = Field(default="", description="Where the site's worker serves snapshot reads "
                                                       "(its worker announces it).")


# Every driver abdr has or plans: the Admin workflow refuses any other name before an activity
# runs. Which of them this build implements is the registry's (drivers.DRIVERS, a subset).
DRIVER_NAMES = ("local", "aoc", "libvirt")


class Cluster(Strict):
    """A cluster in a site, reached through a driver (`local`, `aoc`, `libvirt`)."""

    name: Name
    site: Name
    driver: str = Field(default="local", json_schema_extra={"enum": list(DRIVER_NAMES)})
    endpoint: str = Field(default="", description="Driver-specific: a directory, an AOC URL, a libvirt URI.")

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, v: str) -> str:
        if v not in DRIVER_NAMES:  # said as the choices, not as a pattern of them
            raise ValueError(f"{v!r} is not one of {', '.join(map(repr, DRIVER_NAMES))}")
        return v


class VM(Strict):
    """A VM as a driver reports it."""

    id: str
    cluster: Name
    config: VMConfig
    power_state: PowerState = PowerState.STOPPED

    @property
    def name(self) -> str:
        return self.config.name


class GuestSigns(Strict):
    """What a running guest itself showed, as its hypervisor can see it: the evidence of a
    boot that a failover test records. None: the driver cannot see that kind of sign (the
    local driver simulates no guest; a VM without a guest-agent channel has no agent)."""

    console_tail: str | None = Field(default=None, description="The serial console's output since the last power-on (its end).")
    agent: bool | None = Field(default=None, description="The guest agent answered a ping.")

    @property
    def visible(self) -> bool:
        return self.console_tail is not None or self.agent is not None


class SnapshotInfo(Strict):
    """A VM snapshot (all disks at one instant)."""

    id: str
    vm_id: str
    name: str
    created_at: datetime
    consistency: Consistency = Consistency.CRASH_CONSISTENT
    config: VMConfig
