"""Plans from `backup-plan` and `replication-plan` options: what a command was given
(None: not given), turned into a validated spec for create, or applied to the current spec
for update. Each value is in the compact grammar (grammar.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.plans import BackupPlanSpec
from models.replication import ReplicationPlanSpec
from starter.cli.grammar import (
    UsageError,
    infer_source_and_kind,
    parse_consistency,
    parse_delay,
    parse_ip_map,
    parse_kind,
    parse_naming,
    parse_network_map,
    parse_retention,
    parse_schedule,
    parse_vm,
    parse_window,
)


@dataclass
class PlanOptions:
    """What `backup-plan create/update` were given; None means "not given"."""

    vms: list[str] | None = None
    repository: str | None = None
    schedule: str | None = None
    full_schedule: str | None = None  # "none" clears it (update)
    window: str | None = None  # "none" clears it (update)
    delay: str | None = None
    retention: str | None = None
    tz: str | None = None
    consistency: str | None = None
    compression: bool | None = None
    service: str | None = None
    description: str | None = None

    def given(self) -> bool:
        return any(v is not None and v != [] for v in vars(self).values())


def plan_from_options(name: str, o: PlanOptions, current: dict | None = None) -> BackupPlanSpec:
    """A new plan from options (create), or `current` (a plan spec as JSON) with the given
    options applied (update). Validated by BackupPlanSpec: errors name field and rule."""
    if current is None:
        missing = [opt for opt, v in (("--vm", o.vms), ("--repository", o.repository),
                                      ("--schedule", o.schedule), ("--retention", o.retention)) if not v]
        if missing:
            raise UsageError(f"backup plan {name!r} needs {', '.join(missing)} (or -f plan.yaml)")
    data: dict[str, Any] = dict(current or {"name": name})
    zone = o.tz or (current or {}).get("schedule", {}).get("time_zone") or "UTC"
    if o.vms:
        data["vms"] = [parse_vm(v).model_dump() for v in o.vms]
    if o.repository is not None:
        data["repository"] = o.repository
    if o.schedule is not None:
        data["schedule"] = parse_schedule(o.schedule, zone, "--schedule").model_dump(mode="json")
    elif o.tz and current:
        data["schedule"] = {**current["schedule"], "time_zone": o.tz}
    if o.full_schedule is not None:
        data["full_schedule"] = (None if o.full_schedule.strip().lower() == "none" else
                                 parse_schedule(o.full_schedule, zone, "--full-schedule").model_dump(mode="json"))
    elif o.tz and current and current.get("full_schedule"):
        data["full_schedule"] = {**current["full_schedule"], "time_zone": o.tz}
    if o.window is not None:
        data["window"] = None if o.window.strip().lower() == "none" else parse_window(o.window).model_dump(mode="json")
    if o.delay is not None:
        data["delay_option"] = parse_delay(o.delay)
    if o.retention is not None:
        data["retention"] = parse_retention(o.retention).model_dump()
    if o.consistency is not None:
        data["consistency"] = parse_consistency(o.consistency)
    if o.compression is not None:
        data["compression"] = o.compression
    if o.service is not None:
        data["backup_service"] = o.service
    if o.description is not None:
        data["description"] = o.description
    return BackupPlanSpec.model_validate(data)


@dataclass
class ReplicationOptions:
    """What `replication-plan create/update` were given; None means "not given". The list
    options (`network_maps`, `ip_maps`) replace the plan's list; `["none"]` empties it."""

    kind: str | None = None
    source_site: str | None = None
    source_cluster: str | None = None
    target_site: str | None = None
    target_cluster: str | None = None
    vms: list[str] | None = None
    schedule: str | None = None
    window: str | None = None  # "none" clears it (update)
    retention: str | None = None
    tz: str | None = None
    network_maps: list[str] | None = None
    ip_maps: list[str] | None = None
    keep_mac: bool | None = None
    naming: str | None = None
    compression: bool | None = None
    consistency: str | None = None
    description: str | None = None
    thin_provisioning: bool | None = None
    abort_window_unfinished: bool | None = None

    def given(self) -> bool:
        return any(v is not None and v != [] for v in vars(self).values())

    def check(self) -> None:
        """Parse every compact value given (a UsageError names the first bad one): run
        before anything is contacted."""
        _replication_fields(self, None)


def _cleared(values: list[str] | None) -> bool:
    return values is not None and [v.strip().lower() for v in values] == ["none"]


def _replication_fields(o: ReplicationOptions, current: dict | None) -> dict[str, Any]:
    """The fields the options set, parsed (spec JSON); `current` gives the zone to keep."""
    data: dict[str, Any] = {}
    zone = o.tz or (current or {}).get("schedule", {}).get("time_zone") or "UTC"
    if o.kind is not None:
        data["kind"] = parse_kind(o.kind)
    for field in ("source_site", "source_cluster", "target_site", "target_cluster", "description",
                  "thin_provisioning", "abort_window_unfinished"):
        if getattr(o, field) is not None:
            data[field] = getattr(o, field)
    if o.vms:
        data["vms"] = [parse_vm(v).model_dump() for v in o.vms]
    if o.schedule is not None:
        data["schedule"] = parse_schedule(o.schedule, zone, "--schedule").model_dump(mode="json")
    elif o.tz and current:
        data["schedule"] = {**current["schedule"], "time_zone": o.tz}
    elif o.tz:
        parse_schedule("every 15m", o.tz, "--tz")  # the zone alone is checked too
    if o.window is not None:
        data["window"] = None if o.window.strip().lower() == "none" else parse_window(o.window).model_dump(mode="json")
    if o.retention is not None:
        data["retention"] = parse_retention(o.retention).model_dump()
    if o.network_maps is not None:
        data["network_mapping"] = [] if _cleared(o.network_maps) else [
            parse_network_map(m).model_dump() for m in o.network_maps]
    if o.ip_maps is not None:
        data["ip_mapping"] = [] if _cleared(o.ip_maps) else [parse_ip_map(m).model_dump() for m in o.ip_maps]
    if o.keep_mac is not None:
        data["keep_mac"] = o.keep_mac
    if o.naming is not None:
        data["naming"] = parse_naming(o.naming).model_dump(mode="json")
    if o.compression is not None:
        data["compression"] = o.compression
    if o.consistency is not None:
        data["consistency"] = parse_consistency(o.consistency)
    return data


def replication_plan_from_options(name: str, o: ReplicationOptions, current: dict | None = None) -> ReplicationPlanSpec:
    """A new replication plan from options (create), or `current` (a spec as JSON) with the
    given options applied (update). `--kind` may be left out (it follows from the sites;
    on update, from the new sites when they change), and so may `--source-cluster` on
    create (it follows from the VMs). Validated by ReplicationPlanSpec."""
    if current is None:
        missing = [opt for opt, v in (("--source-site", o.source_site), ("--target-site", o.target_site),
                                      ("--target-cluster", o.target_cluster), ("--vm", o.vms),
                                      ("--schedule", o.schedule), ("--retention", o.retention)) if not v]
        if missing:
            raise UsageError(f"replication plan {name!r} needs {', '.join(missing)} (or -f plan.yaml)")
    data: dict[str, Any] = {**(current or {"name": name}), **_replication_fields(o, current)}
    if current is None:
        infer_source_and_kind(data)
    elif o.kind is None and (o.source_site is not None or o.target_site is not None):
        data.pop("kind", None)
        infer_source_and_kind(data)
    return ReplicationPlanSpec.model_validate(data)
