"""Plans from `backup-plan` and `replication-plan` options: what a command was given
(None: not given), turned into a validated spec for create, or applied to the current spec
for update. Each value is in the compact grammar (grammar.py); one expander turns the
options both kinds share into spec fields, each kind adds its own. `save_plan` is the one
way `create` and `update` of either kind go from a file or options to a saved plan."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import typer

from models.plans import BackupPlanSpec
from models.replication import ReplicationPlanSpec
from starter.cli.common import cli_errors, with_client
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
from starter.cli.options import JsonOpt
from starter.cli.render import emit, say

if TYPE_CHECKING:
    from starter.client import AbdrClient


@dataclass
class SharedOptions(ABC):
    """The options both plan kinds take; None means "not given"."""

    vms: list[str] | None = None
    schedule: str | None = None
    window: str | None = None  # "none" clears it (update)
    retention: str | None = None
    tz: str | None = None
    consistency: str | None = None
    compression: bool | None = None
    description: str | None = None

    def given(self) -> bool:
        return any(v is not None and v != [] for v in vars(self).values())

    def check(self) -> None:
        """Parse every compact value given (a UsageError names the first bad one): run
        before anything is contacted."""
        self.fields(None)

    @abstractmethod
    def fields(self, current: dict | None) -> dict[str, Any]:
        """The spec fields the options set, parsed (spec JSON); `current` (update) gives the
        zone to keep, and the schedules a new --tz moves."""


def _none(value: str) -> bool:
    return value.strip().lower() == "none"


def _cleared(values: list[str] | None) -> bool:
    return values is not None and [v.strip().lower() for v in values] == ["none"]


def _given(o: SharedOptions, fields: dict[str, str]) -> dict[str, Any]:
    """The options named in `fields` (option: spec field) that were given, as they are."""
    return {field: getattr(o, opt) for opt, field in fields.items() if getattr(o, opt) is not None}


def shared_fields(o: SharedOptions, current: dict | None, schedules: dict[str, str | None]) -> dict[str, Any]:
    """The one expander of the fields both plan kinds share. `schedules`: the plan's
    schedule fields with their options' values; those but `schedule` are optional ("none"
    clears one). A --tz alone moves the current schedules to that zone (and is checked)."""
    data: dict[str, Any] = {}
    zone = o.tz or (current or {}).get("schedule", {}).get("time_zone") or "UTC"
    if o.vms:
        data["vms"] = [parse_vm(v).model_dump() for v in o.vms]
    for field, value in schedules.items():
        flag = "--" + field.replace("_", "-")
        if value is not None:
            data[field] = (None if field != "schedule" and _none(value) else
                           parse_schedule(value, zone, flag).model_dump(mode="json"))
        elif o.tz and current and current.get(field):
            data[field] = {**current[field], "time_zone": o.tz}
    if o.tz and not current and o.schedule is None:
        parse_schedule("every 15m", o.tz, "--tz")  # the zone alone is checked too
    if o.window is not None:
        data["window"] = None if _none(o.window) else parse_window(o.window).model_dump(mode="json")
    if o.retention is not None:
        data["retention"] = parse_retention(o.retention).model_dump()
    if o.consistency is not None:
        data["consistency"] = parse_consistency(o.consistency)
    return {**data, **_given(o, {"compression": "compression", "description": "description"})}


def _require(what: str, name: str, options: dict[str, Any]) -> None:
    """Create: refuse options that leave out a field a plan must have, naming each."""
    missing = [opt for opt, value in options.items() if not value]
    if missing:
        raise UsageError(f"{what} {name!r} needs {', '.join(missing)} (or -f plan.yaml)")


@dataclass
class PlanOptions(SharedOptions):
    """What `backup-plan create/update` were given; None means "not given"."""

    repository: str | None = None
    full_schedule: str | None = None  # "none" clears it (update)
    delay: str | None = None
    service: str | None = None

    def fields(self, current: dict | None) -> dict[str, Any]:
        data = shared_fields(self, current, {"schedule": self.schedule, "full_schedule": self.full_schedule})
        if self.delay is not None:
            data["delay_option"] = parse_delay(self.delay)
        return {**data, **_given(self, {"repository": "repository", "service": "backup_service"})}


def plan_from_options(name: str, o: PlanOptions, current: dict | None = None) -> BackupPlanSpec:
    """A new plan from options (create), or `current` (a plan spec as JSON) with the given
    options applied (update). Validated by BackupPlanSpec: errors name field and rule."""
    if current is None:
        _require("backup plan", name, {"--vm": o.vms, "--repository": o.repository, "--schedule": o.schedule,
                                       "--retention": o.retention})
    return BackupPlanSpec.model_validate({**(current or {"name": name}), **o.fields(current)})


@dataclass
class ReplicationOptions(SharedOptions):
    """What `replication-plan create/update` were given; None means "not given". The list
    options (`network_maps`, `ip_maps`) replace the plan's list; `["none"]` empties it."""

    kind: str | None = None
    source_site: str | None = None
    source_cluster: str | None = None
    target_site: str | None = None
    target_cluster: str | None = None
    network_maps: list[str] | None = None
    ip_maps: list[str] | None = None
    keep_mac: bool | None = None
    naming: str | None = None
    thin_provisioning: bool | None = None
    abort_window_unfinished: bool | None = None

    def fields(self, current: dict | None) -> dict[str, Any]:
        data = shared_fields(self, current, {"schedule": self.schedule})
        if self.kind is not None:
            data["kind"] = parse_kind(self.kind)
        if self.network_maps is not None:
            data["network_mapping"] = [] if _cleared(self.network_maps) else [
                parse_network_map(m).model_dump() for m in self.network_maps]
        if self.ip_maps is not None:
            data["ip_mapping"] = [] if _cleared(self.ip_maps) else [parse_ip_map(m).model_dump() for m in self.ip_maps]
        if self.naming is not None:
            data["naming"] = parse_naming(self.naming).model_dump(mode="json")
        return {**data, **_given(self, {f: f for f in ("source_site", "source_cluster", "target_site", "target_cluster",
                                                       "keep_mac", "thin_provisioning", "abort_window_unfinished")})}


def replication_plan_from_options(name: str, o: ReplicationOptions, current: dict | None = None) -> ReplicationPlanSpec:
    """A new replication plan from options (create), or `current` (a spec as JSON) with the
    given options applied (update). `--kind` may be left out (it follows from the sites;
    on update, from the new sites when they change), and so may `--source-cluster` on
    create (it follows from the VMs). Validated by ReplicationPlanSpec."""
    if current is None:
        _require("replication plan", name, {"--source-site": o.source_site, "--target-site": o.target_site,
                                            "--target-cluster": o.target_cluster, "--vm": o.vms,
                                            "--schedule": o.schedule, "--retention": o.retention})
    data: dict[str, Any] = {**(current or {"name": name}), **o.fields(current)}
    if current is None:
        infer_source_and_kind(data)
    elif o.kind is None and (o.source_site is not None or o.target_site is not None):
        data.pop("kind", None)
        infer_source_and_kind(data)
    return ReplicationPlanSpec.model_validate(data)


Spec = TypeVar("Spec", BackupPlanSpec, ReplicationPlanSpec)


@dataclass(frozen=True)
class PlanKind(Generic[Spec]):
    """What the commands both plan kinds share need of one kind: its noun, how a file and
    options make its spec, and the client's calls for it."""

    noun: str
    load: Callable[[Path, str | None], Spec]  # (file, the name it must hold or None)
    build: Callable[[str, Any, dict | None], Spec]  # (name, options, current spec as JSON or None)
    current: Callable[[AbdrClient, str], Awaitable[dict]]  # the plan's spec as JSON
    create: Callable[[AbdrClient, Spec], Awaitable[Any]]
    update: Callable[[AbdrClient, Spec], Awaitable[Any]]
    set_paused: Callable[[AbdrClient, str, bool], Awaitable[Any]]  # (name, paused): the plan's view


def plan_spec(kind: PlanKind[Spec], name: str | None, file: Path | None, o: SharedOptions,
              update: bool) -> tuple[str, Spec | None]:
    """What `create` or `update` was asked for: the plan's name and its spec when the
    command alone makes it (-f FILE, or the options of a create); None: the update applies
    the options to the current spec. What the command cannot take is refused here, before
    anything is contacted."""
    if file is not None:
        if o.given():
            raise UsageError("give either -f FILE or plan options, not both")
        spec = kind.load(file, name)
        return spec.name, spec
    if name is None:
        raise UsageError("name the plan (or give -f plan.yaml)")
    if not update:
        return name, kind.build(name, o, None)
    if not o.given():
        raise UsageError("nothing to change: give plan options or -f plan.yaml")
    o.check()
    return name, None


def save_plan(kind: PlanKind[Spec], update: bool, name: str | None, file: Path | None, o: SharedOptions) -> Any:
    """Create or update a plan from -f FILE or options; what the client answered."""
    plan, spec = plan_spec(kind, name, file, o, update)

    async def run(c: AbdrClient) -> Any:  # spec is None only for an update by options
        new = spec or kind.build(plan, o, await kind.current(c, plan))
        return await (kind.update if update else kind.create)(c, new)

    return with_client(run)


def add_save_commands(app: typer.Typer, kind: PlanKind[Any], save: Callable[[bool], Callable[..., None]]) -> None:
    """`create` and `update`: one command function, `save(update)`, so one set of options."""
    app.command("create", help=f"Create a {kind.noun} from options or from -f plan.yaml; "
                               "its Temporal Schedule starts working.")(save(False))
    app.command("update", help="Change a plan: -f replaces it whole; options change only what they name.")(save(True))


def add_pause_commands(app: typer.Typer, kind: PlanKind[Any]) -> None:
    """`pause` and `resume`: the plan's status and its schedule's state, for either kind."""

    def setter(paused: bool) -> Callable[[str, bool], None]:
        def set_paused(name: str, as_json: JsonOpt = False) -> None:
            with cli_errors():
                emit(with_client(lambda c: kind.set_paused(c, name, paused)), as_json,
                     lambda p: say(f"{kind.noun} [bold]{name}[/bold] {p.status}"))
        return set_paused

    app.command("pause", help="Pause a plan: its schedule stops starting runs (manual runs still work).")(setter(True))
    app.command("resume", help="Resume a paused plan.")(setter(False))
