"""The domain models refuse what the product refuses, with a message naming field and rule."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from models.inventory import NIC, DiskSpec, VMConfig, check_name
from models.plans import BackupPlanSpec, VMRef
from models.replication import (
    TRANSITIONS,
    IllegalTransition,
    ReplicaState,
    ReplicationPlanSpec,
    check_transition,
)
from models.requests import FailoverRequest, RestoreRequest
from models.retention import Retention
from models.schedule import Schedule, Window
from models.services import RepositorySpec

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def plan(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "gold",
        "vms": [{"cluster": "c1", "vm": "web"}],
        "repository": "repo1",
        "schedule": {"kind": "DAILY", "times": ["01:00"]},
        "retention": {"kind": "COUNT", "value": 7},
    }
    base.update(over)
    return base


def rplan(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "dr", "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "c1",
        "target_site": "b", "target_cluster": "c2", "vms": [{"cluster": "c1", "vm": "web"}],
        "schedule": {"kind": "MINUTELY", "interval": 15}, "retention": {"kind": "COUNT", "value": 3},
    }
    base.update(over)
    return base


def refused(model: type, data: dict[str, Any], *fragments: str) -> None:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data)
    text = str(e.value)
    for f in fragments:
        assert f in text, f"{f!r} not in {text}"


def test_valid_plan_round_trips() -> None:
    spec = BackupPlanSpec.model_validate(plan(window={"start": "22:00", "end": "06:00"}))
    assert BackupPlanSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize("schedule, fragments", [
    ({"kind": "MINUTELY", "interval": 4}, ["interval 4 is out of range for MINUTELY: 5-59"]),
    ({"kind": "HOURLY", "interval": 24}, ["interval 24 is out of range for HOURLY: 1-23"]),
    ({"kind": "DAILY", "interval": 31, "times": ["01:00"]}, ["out of range for DAILY: 1-30"]),
    ({"kind": "DAILY", "times": []}, ["DAILY needs at least one HH:MM time"]),
    ({"kind": "DAILY", "times": ["01:00", "01:10"]}, ["at least 15 minutes apart"]),
    ({"kind": "DAILY", "times": ["23:55", "00:05"]}, ["at least 15 minutes apart"]),
    ({"kind": "DAILY", "times": ["25:00"]}, ["time '25:00' is not HH:MM"]),
    ({"kind": "WEEKLY", "times": ["01:00"]}, ["WEEKLY needs at least one weekday"]),
    ({"kind": "WEEKLY", "times": ["01:00"], "weekdays": ["FUNDAY"]}, ["weekdays"]),
    ({"kind": "MONTHLY", "times": ["01:00"], "days_of_month": [0]}, ["days_of_month [0] out of range 1-31"]),
    ({"kind": "MINUTELY", "interval": 15, "times": ["01:00"]}, ["times are not used by MINUTELY"]),
    ({"kind": "DAILY", "times": ["01:00"], "time_zone": "Mars/Olympus"}, ["'Mars/Olympus' is not a known IANA"]),
    ({"kind": "WEEKLY", "interval": 2, "times": ["01:00"], "weekdays": ["MON"]}, ["interval is not used by WEEKLY"]),
])
def test_schedule_rules(schedule: dict[str, Any], fragments: list[str]) -> None:
    refused(Schedule, schedule, *fragments)


def test_window_rules() -> None:
    refused(Window, {"start": "22:00", "end": "22:10"}, "at least 15 minutes")
    refused(Window, {"start": "10:00", "end": "10:00"}, "is 0 min long")
    assert Window(start="23:50", end="00:05").length_minutes == 15


def test_plan_rules() -> None:
    refused(BackupPlanSpec, plan(vms=[]), "vms: a plan protects at least one VM")
    refused(BackupPlanSpec, plan(vms=[{"cluster": "c1", "vm": "a"}] * 2), "repeated: ['c1/a']")
    refused(BackupPlanSpec, plan(name="../etc"), "name")
    refused(BackupPlanSpec, plan(retention={"kind": "COUNT"}), "retention COUNT needs a number")
    refused(BackupPlanSpec, plan(retention={"kind": "FOREVER", "value": 3}), "FOREVER takes no value")
    refused(BackupPlanSpec, plan(window={"start": "02:00", "end": "03:00"}),
            "schedule has no due time inside the window 02:00-03:00")
    refused(BackupPlanSpec, plan(delay_option="MAYBE"), "delay_option")
    refused(BackupPlanSpec, plan(colour="blue"), "colour", "Extra inputs are not permitted")
    refused(BackupPlanSpec, plan(full_schedule={"kind": "WEEKLY", "times": ["01:00"], "weekdays": ["SUN"],
                                                "time_zone": "Europe/Berlin"}),
            "full_schedule.time_zone must equal schedule.time_zone")


def test_replication_plan_rules() -> None:
    ReplicationPlanSpec.model_validate(rplan())
    refused(ReplicationPlanSpec, rplan(kind="INTRA_SITE"), "INTRA_SITE replication needs source_site == target_site")
    refused(ReplicationPlanSpec, rplan(target_site="a"), "CROSS_SITE replication needs different")
    refused(ReplicationPlanSpec, rplan(kind="INTRA_SITE", target_site="a", target_cluster="c1"),
            "target_cluster must differ from source_cluster")
    refused(ReplicationPlanSpec, rplan(vms=[{"cluster": "c9", "vm": "web"}]), "not on the source cluster 'c1'")
    refused(ReplicationPlanSpec, rplan(network_mapping=[{"source": "v1", "target": "x"}, {"source": "v1", "target": "y"}]),
            "each source network is mapped once")
    refused(ReplicationPlanSpec, rplan(ip_mapping=[{"source_ip": "10.0.0.300", "target_ip": "10.1.0.1"}]),
            "'10.0.0.300' is not an IP address")
    refused(ReplicationPlanSpec, rplan(naming={"rule": "PREFIX", "text": ""}), "naming.text is required")
    refused(ReplicationPlanSpec, rplan(naming={"rule": "PREFIX", "text": "../"}), "replica name '../web' looks like a path")
    spec = ReplicationPlanSpec.model_validate(rplan(naming={"rule": "PREFIX", "text": "dr-"}))
    assert spec.naming.replica_name("web") == "dr-web"


def test_replica_state_machine() -> None:
    replica = VMRef(cluster="c2", vm="web-r")
    with pytest.raises(IllegalTransition, match="cannot go from NOT_READY to FAILOVER; allowed: REPLICATING"):
        check_transition(replica, ReplicaState.NOT_READY, ReplicaState.FAILOVER)
    path = [ReplicaState.NOT_READY, ReplicaState.REPLICATING, ReplicaState.READY, ReplicaState.FAILOVER,
            ReplicaState.FAILBACK, ReplicaState.READY, ReplicaState.FAILOVER, ReplicaState.PERMANENT_FAILOVER]
    for frm, to in zip(path, path[1:]):
        check_transition(replica, frm, to)
    with pytest.raises(IllegalTransition, match="none \\(final state\\)"):
        check_transition(replica, ReplicaState.PERMANENT_FAILOVER, ReplicaState.READY)
    # Every state but the final one can move somewhere; every target is a known state.
    assert all(TRANSITIONS[s] for s in ReplicaState if s != ReplicaState.PERMANENT_FAILOVER)


def test_inventory_rules() -> None:
    refused(DiskSpec, {"name": "d0", "size_bytes": 1000}, "size_bytes 1000 is not a multiple of 4096")
    refused(NIC, {"name": "n0", "network": "v1", "mac": "zz:00:00:00:00:00"}, "mac")
    refused(VMConfig, {"name": "a", "disks": [{"name": "d", "size_bytes": 4096}] * 2},
            "disk names must be unique within a VM; repeated: ['d']")
    for bad in ["", "../x", "a/b", ".hidden", "x" * 64, "-dash"]:
        with pytest.raises(ValueError, match="a name uses letters, digits"):
            check_name(bad)


def test_request_rules() -> None:
    refused(RestoreRequest, {"point_id": "p", "mode": "REBUILD"}, "new_name is required for a REBUILD restore")
    refused(RestoreRequest, {"point_id": "p", "mode": "INPLACE", "new_name": "x"}, "apply to REBUILD only")
    refused(FailoverRequest, {"plan": "dr", "vm": "web", "point": "now"}, "point 'now' needs a source_shutdown mode")
    refused(RepositorySpec, {"name": "r", "path": "relative/dir"}, "path 'relative/dir' must be absolute")


def test_retention_model() -> None:
    assert Retention.model_validate({"kind": "TIME", "value": 30}).value == 30
    refused(Retention, {"kind": "TIME", "value": 0}, "retention TIME needs a number of days")
