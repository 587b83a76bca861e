"""Requests of the operations users start: restore, failover, failover test, failback and
permanent failover. One model per workflow input (Temporal convention)."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from models.inventory import Name, ShutdownMode, Strict
from models.replication import NetworkMapping


class RestoreMode(StrEnum):
    INPLACE = "INPLACE"
    REBUILD = "REBUILD"


class RestoreRequest(Strict):
    point_id: str = Field(min_length=1)
    mode: RestoreMode
    vm: str | None = Field(default=None, description="INPLACE: 'cluster/vm' the point must belong to.")
    power_on: bool = False
    target_cluster: Name | None = Field(default=None, description="REBUILD: default the source's.")
    new_name: Name | None = Field(default=None, description="REBUILD: the new VM's name.")
    network_mapping: list[NetworkMapping] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "RestoreRequest":
        if self.mode == RestoreMode.REBUILD and not self.new_name:
            raise ValueError("new_name is required for a REBUILD restore")
        if self.mode == RestoreMode.INPLACE and (self.new_name or self.target_cluster or self.network_mapping):
            raise ValueError("new_name, target_cluster and network_mapping apply to REBUILD only")
        if self.vm is not None and self.vm.count("/") != 1:
            raise ValueError(f"vm {self.vm!r} must be written cluster/vm")
        return self


LATEST = "latest"
NOW = "now"


class FailoverRequest(Strict):
    """`point`: 'latest', 'now' (final sync first; the source must be reachable) or a point id."""

    plan: Name
    vm: Name
    point: str = LATEST
    source_shutdown: ShutdownMode = ShutdownMode.NONE
    shutdown_timeout_s: int = Field(default=300, ge=1, le=86400)
    power_on: bool = True

    @model_validator(mode="after")
    def _check(self) -> "FailoverRequest":
        if self.point == NOW and self.source_shutdown == ShutdownMode.NONE:
            raise ValueError(
                "point 'now' needs a source_shutdown mode: a final sync of a running source "
                "would not be the last state"
            )
        return self


class UndoFailoverRequest(Strict):
    plan: Name
    vm: Name


class FailoverTestRequest(Strict):
    """Start a copy of the replica at a point on an isolated network; it is cleaned up on
    request (`abdr failover-test cleanup`) or after `cleanup_after_s`."""

    plan: Name
    vm: Name
    point: str = LATEST
    test_network: Name = "abdr-isolated"
    cleanup_after_s: int = Field(default=3600, ge=1, le=30 * 86400)
    expect_console: str | None = Field(
        default=None, max_length=1000,
        description="A regular expression the last 1000 characters of the copy's serial console must show (where the "
                    "hypervisor shows the console: libvirt). Default: any output, or a guest-agent ping.")
    boot_timeout_s: int = Field(default=600, ge=1, le=3600,
                                description="How long the copy may take to show that it booted (at most an hour: "
                                            "the drill asks every 5 s, and its history must stay bounded).")

    @field_validator("expect_console")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"expect_console {v!r} is not a regular expression: {e}") from None
        return v


class FailbackRequest(Strict):
    plan: Name
    vm: Name
    power_on: bool = True


class PermanentFailoverRequest(Strict):
    plan: Name
    vm: Name
    reprotect: bool = False
    reprotect_plan: Name | None = None


class DiskExportRequest(Strict):
    """A raw image of a VM's disk (stopped), or of that disk in one of its restore points,
    written to a new file on the site's worker (the path as that worker sees it)."""

    disk: Name
    path: str = Field(min_length=2, max_length=4096, pattern="^/", description="Absolute path of a new file.")
    point: str | None = Field(default=None, min_length=1, max_length=200, description="A restore point's id.")
