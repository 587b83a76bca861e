"""Replication plans, replication objects and the replica state machine."""

from __future__ import annotations

import ipaddress
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from models.inventory import Consistency, Name, Strict, check_name
from models.plans import VMRef, check_unique_vms
from models.retention import Retention
from models.schedule import Schedule, Window


class ReplicationKind(StrEnum):
    INTRA_SITE = "INTRA_SITE"
    CROSS_SITE = "CROSS_SITE"


class NamingRule(StrEnum):
    ORIGIN = "ORIGIN"
    PREFIX = "PREFIX"
    SUFFIX = "SUFFIX"


class ReplicaNaming(Strict):
    rule: NamingRule = NamingRule.SUFFIX
    text: str = "-replica"

    @model_validator(mode="after")
    def _check(self) -> "ReplicaNaming":
        if self.rule != NamingRule.ORIGIN and not self.text:
            raise ValueError(f"naming.text is required with rule {self.rule}")
        return self

    def replica_name(self, vm_name: str) -> str:
        name = {
            NamingRule.ORIGIN: vm_name,
            NamingRule.PREFIX: f"{self.text}{vm_name}",
            NamingRule.SUFFIX: f"{vm_name}{self.text}",
        }[self.rule]
        return check_name(name, "replica name")


class NetworkMapping(Strict):
    source: Name
    target: Name


class IPMapping(Strict):
    source_ip: str
    target_ip: str
    gateway: str | None = None
    prefix_length: int = Field(default=24, ge=0, le=128)

    @field_validator("source_ip", "target_ip", "gateway")
    @classmethod
    def _ip(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an IP address") from None
        return v


class ReplicationPlanSpec(Strict):
    name: Name
    description: str = ""
    kind: ReplicationKind
    source_site: Name
    source_cluster: Name
    target_site: Name
    target_cluster: Name
    vms: list[VMRef]
    source_service: Name | None = Field(default=None, description="Default: the source site.")
    target_service: Name | None = Field(default=None, description="Default: the target site.")
    schedule: Schedule
    window: Window | None = None
    abort_window_unfinished: bool = False
    retention: Retention
    compression: bool = True
    consistency: Consistency = Consistency.CRASH_CONSISTENT
    network_mapping: list[NetworkMapping] = Field(default_factory=list)
    ip_mapping: list[IPMapping] = Field(default_factory=list)
    keep_mac: bool = True
    naming: ReplicaNaming = Field(default_factory=ReplicaNaming)
    thin_provisioning: bool = Field(default=True, description="Thin replica disks (space taken as written); "
                                    "False: thick, their whole size reserved when created.")

    @model_validator(mode="before")
    @classmethod
    def _no_storage_policy(cls, data: Any) -> Any:
        """`storage_policy` was accepted and never applied: it is an AOC volume setting, and no
        driver of ours has storage policies. The default, as older catalogs and histories hold
        it, is dropped; any other value is refused instead of being ignored."""
        if isinstance(data, dict) and "storage_policy" in data:
            data = dict(data)
            if data.pop("storage_policy") not in ("default", None):
                raise ValueError("storage_policy is not supported: abdr's cluster drivers have no storage "
                                 "policies; thin_provisioning chooses thin or thick replica disks")
        return data

    @model_validator(mode="after")
    def _check(self) -> "ReplicationPlanSpec":
        check_unique_vms(self.vms)
        same_site = self.source_site == self.target_site
        if self.kind == ReplicationKind.INTRA_SITE and not same_site:
            raise ValueError("INTRA_SITE replication needs source_site == target_site")
        if self.kind == ReplicationKind.CROSS_SITE and same_site:
            raise ValueError("CROSS_SITE replication needs different source_site and target_site")
        if self.source_cluster == self.target_cluster and same_site:
            raise ValueError("target_cluster must differ from source_cluster")
        foreign = [str(v) for v in self.vms if v.cluster != self.source_cluster]
        if foreign:
            raise ValueError(f"vms {foreign} are not on the source cluster {self.source_cluster!r}")
        sources = [m.source for m in self.network_mapping]
        if len(set(sources)) != len(sources):
            raise ValueError("network_mapping: each source network is mapped once")
        if self.window is not None and not self.schedule.minutes_of_day(self.window):
            raise ValueError("schedule has no due time inside the window: the plan would never run")
        for vm in self.vms:
            self.naming.replica_name(vm.vm)
        return self


class ReplicaState(StrEnum):
    NOT_READY = "NOT_READY"
    REPLICATING = "REPLICATING"
    READY = "READY"
    FAILOVER = "FAILOVER"
    FAILOVER_TEST = "FAILOVER_TEST"
    FAILBACK = "FAILBACK"
    PERMANENT_FAILOVER = "PERMANENT_FAILOVER"


S = ReplicaState
# The states a replication run may start from (a drill runs beside replication).
REPLICABLE = (ReplicaState.NOT_READY, ReplicaState.READY, ReplicaState.FAILOVER_TEST)
# Allowed transitions. A drill (FAILOVER_TEST) runs beside replication, so syncs may run
# and finish in that state; a real failover may interrupt a drill.
TRANSITIONS: dict[ReplicaState, frozenset[ReplicaState]] = {
    S.NOT_READY: frozenset({S.REPLICATING}),
    S.REPLICATING: frozenset({S.READY, S.NOT_READY}),
    S.READY: frozenset({S.REPLICATING, S.FAILOVER, S.FAILOVER_TEST, S.PERMANENT_FAILOVER}),
    S.FAILOVER_TEST: frozenset({S.READY, S.FAILOVER}),
    S.FAILOVER: frozenset({S.READY, S.FAILBACK, S.PERMANENT_FAILOVER}),
    S.FAILBACK: frozenset({S.READY, S.FAILOVER}),
    S.PERMANENT_FAILOVER: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def check_transition(replica: object, frm: ReplicaState, to: ReplicaState) -> None:
    """Raise IllegalTransition unless the state machine allows `frm` -> `to`."""
    if to not in TRANSITIONS[frm]:
        allowed = ", ".join(sorted(TRANSITIONS[frm])) or "none (final state)"
        raise IllegalTransition(f"replica {replica} cannot go from {frm} to {to}; allowed: {allowed}")


class StateChange(Strict):
    """One entry of a replica's history. The history lives in the catalog only (paged),
    never in an object's payload: at a 5-minute RPO it grows by ~600 entries a day."""

    from_state: ReplicaState
    to_state: ReplicaState
    at: datetime
    reason: str = ""
    owner: str | None = None


class ReplicationObject(Strict):
    """An original VM and its replica, with the replica's state.

    `version` grows by one with every change (the catalog's compare-and-set); `owner` is the
    workflow that holds the replica's claim: the one operation allowed to write into the
    replica or switch it (a replication run, a failover, a failback) until it lets go."""

    plan: Name
    source: VMRef
    replica: VMRef
    state: ReplicaState = ReplicaState.NOT_READY
    version: int = 0
    owner: str | None = None
    last_point_at: datetime | None = None
    source_vm_id: str | None = None
    replica_vm_id: str | None = None
    source_snapshot: str | None = Field(default=None, description="Source snapshot equal to replica_point.")
    replica_point: str | None = Field(default=None, description="Newest replica point (a replica snapshot id).")
    failover_snapshot: str | None = Field(default=None, description="Replica snapshot taken at failover.")

    @model_validator(mode="before")
    @classmethod
    def _drop_legacy_history(cls, data: object) -> object:
        # Payloads recorded before the history moved to the catalog carry it inline; they
        # must still load when those runs are replayed.
        if isinstance(data, dict) and "history" in data:
            data = {k: v for k, v in data.items() if k != "history"}
        return data

    def rpo_lag_seconds(self, now: datetime) -> float | None:
        return None if self.last_point_at is None else (now - self.last_point_at).total_seconds()
