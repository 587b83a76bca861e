"""Compact forms for plans on the command line and in YAML files, parsed into the domain
models (`models.schedule`, `models.plans`, `models.retention`), which do the validating.

Schedules (case-insensitive; `--tz`/`time_zone` gives the zone, default UTC):

    every 15m                   MINUTELY, every N minutes (5-59) from 00:00
    every 2h [at :10]           HOURLY, every N hours (1-23) at minute :MM (default :00)
    hourly [at :10]             HOURLY, every hour
    daily 01:00[,13:00...]      DAILY at one or more times (15 min apart at least)
    every 2d 01:00[,...]        DAILY every N days (1-30), counted from the 1st of the month
    weekly mon,thu 02:30[,...]  WEEKLY on weekdays (mon..sun; ranges: mon-fri)
    monthly 1,15 03:00[,...]    MONTHLY on days of the month (1-31; ranges: 1-5)

Windows `22:00-06:00`; retention `count:7`, `days:30`, `forever`; delay option
`keep-go-on` / `stop-backup`; consistency `crash` / `fs`; VMs `cluster/vm`.

Replication plans add: kind `intra` / `cross`; replica naming `origin`, `prefix:TEXT`,
`suffix:TEXT`; network maps `prod=dr-prod`; IP maps `10.0.0.5=192.168.1.5[/24][@192.168.1.1]`
(target prefix length and gateway optional); shutdown modes `none`, `shutdown`, `poweroff`,
`shutdown-with-poweroff`; durations `3600`, `90s`, `30m`, `2h`, `1d`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models.inventory import Cluster, Consistency, ShutdownMode, Site
from models.plans import BackupDelayOption, BackupPlanSpec, VMRef
from models.replication import (
    IPMapping,
    NamingRule,
    NetworkMapping,
    ReplicaNaming,
    ReplicationKind,
    ReplicationPlanSpec,
)
from models.retention import Retention, RetentionKind
from models.schedule import Schedule, ScheduleKind, Weekday, Window
from models.services import RepositorySpec
from starter.output import validation_message


class UsageError(ValueError):
    """Bad input on the command line or in a file; the message names the option and rule."""


SCHEDULE_FORMS = ("every 15m | every 2h [at :10] | hourly [at :10] | daily 01:00[,13:00] | "
                  "every 2d 01:00 | weekly mon,thu 02:30 | monthly 1,15 03:00")
_WEEKDAYS = {w.value.lower(): w for w in Weekday}
_WEEKDAY_NAMES = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
                  "saturday": "sat", "sunday": "sun", "tues": "tue", "thur": "thu", "thurs": "thu"}
_TIMES = r"(?P<times>\d{1,2}:\d{2}(?:,\d{1,2}:\d{2})*)"
_FORMS = [
    (ScheduleKind.MINUTELY, re.compile(r"every\s+(?P<n>\d+)\s*(?:m|mins?|minutes?)")),
    (ScheduleKind.HOURLY, re.compile(
        r"(?:hourly|every\s+(?P<n>\d+)\s*(?:h|hrs?|hours?))(?:\s+at\s+:?(?P<minute>\d{1,2}))?")),
    (ScheduleKind.DAILY, re.compile(r"(?:daily|every\s+(?P<n>\d+)\s*(?:d|days?))\s+" + _TIMES)),
    (ScheduleKind.WEEKLY, re.compile(r"weekly\s+(?P<days>[a-z,\-]+)\s+" + _TIMES)),
    (ScheduleKind.MONTHLY, re.compile(r"monthly\s+(?P<days>[\d,\-]+)\s+" + _TIMES)),
]


def _model_error(what: str, text: Any, e: ValidationError) -> UsageError:
    return UsageError(f"{what} {text!r}: {validation_message(e)}")


def _hhmm(t: str) -> str:
    return t if len(t) == 5 else f"0{t}"  # 1:00 -> 01:00; the model checks the range


def _expand(items: str, what: str, parse: Any, order: Any) -> list[Any]:
    """Comma-separated values and a-b ranges, in the order given; a repeat is an error."""
    out: list[Any] = []
    for item in items.split(","):
        lo, sep, hi = item.partition("-")
        try:
            a = parse(lo)
            values = [a]
            if sep:
                b = parse(hi)
                if order(b) < order(a):
                    raise UsageError(f"{what} range {item!r} runs backwards")
                values = _range(a, b, order)
        except (KeyError, ValueError) as e:
            if isinstance(e, UsageError):
                raise
            raise UsageError(f"{what} {item!r} is not understood") from None
        for v in values:
            if v in out:
                raise UsageError(f"{what} {v if isinstance(v, int) else v.value.lower()!r} is given twice")
            out.append(v)
    return out


def _range(a: Any, b: Any, order: Any) -> list[Any]:
    if isinstance(a, int):
        return list(range(a, b + 1))
    return [w for w in Weekday if order(a) <= order(w) <= order(b)]


def _weekday(token: str) -> Weekday:
    token = _WEEKDAY_NAMES.get(token, token)
    return _WEEKDAYS[token]


def parse_schedule(text: str, time_zone: str | None = None, what: str = "schedule") -> Schedule:
    """A compact schedule (see the module doc) as a validated Schedule."""
    norm = " ".join(text.strip().lower().split())
    for kind, rx in _FORMS:
        m = rx.fullmatch(norm)
        if not m:
            continue
        g = m.groupdict()
        data: dict[str, Any] = {"kind": kind, "time_zone": time_zone or "UTC"}
        if g.get("n") is not None:
            data["interval"] = int(g["n"])
        if g.get("minute") is not None:
            data["minute"] = int(g["minute"])
        if g.get("times"):
            data["times"] = [_hhmm(t) for t in g["times"].split(",")]
        if kind == ScheduleKind.WEEKLY:
            data["weekdays"] = _expand(g["days"], f"{what} {text!r}: weekday", _weekday, lambda w: w.iso)
        if kind == ScheduleKind.MONTHLY:
            data["days_of_month"] = _expand(g["days"], f"{what} {text!r}: day of month", int, lambda d: d)
        try:
            return Schedule.model_validate(data)
        except ValidationError as e:
            raise _model_error(what, text, e) from None
    raise UsageError(f"{what} {text!r} is not understood; use one of: {SCHEDULE_FORMS}")


def format_schedule(s: Schedule | dict, with_zone: bool = False) -> str:
    """The compact form of a schedule (parse_schedule(format_schedule(s)) == s, zone aside)."""
    s = Schedule.model_validate(s) if isinstance(s, dict) else s
    times = ",".join(t.strftime("%H:%M") for t in s.times)
    n = s.interval
    if s.kind == ScheduleKind.MINUTELY:
        out = f"every {n}m"
    elif s.kind == ScheduleKind.HOURLY:
        out = ("hourly" if n == 1 else f"every {n}h") + (f" at :{s.minute:02d}" if s.minute else "")
    elif s.kind == ScheduleKind.DAILY:
        out = (f"daily {times}" if n == 1 else f"every {n}d {times}")
    elif s.kind == ScheduleKind.WEEKLY:
        out = f"weekly {','.join(w.value.lower() for w in s.weekdays)} {times}"
    else:
        out = f"monthly {','.join(map(str, s.days_of_month))} {times}"
    return f"{out} ({s.time_zone})" if with_zone and s.time_zone != "UTC" else out


def parse_window(text: str) -> Window:
    m = re.fullmatch(r"\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*", text)
    if not m:
        raise UsageError(f"window {text!r} is not understood; use HH:MM-HH:MM (e.g. 22:00-06:00)")
    try:
        return Window(start=_hhmm(m[1]), end=_hhmm(m[2]))
    except ValidationError as e:
        raise _model_error("window", text, e) from None


def format_window(w: Window | dict | None) -> str:
    if w is None:
        return ""
    w = Window.model_validate(w) if isinstance(w, dict) else w
    return f"{w.start:%H:%M}-{w.end:%H:%M}"


def parse_retention(text: str) -> Retention:
    norm = text.strip().lower()
    if norm == "forever":
        return Retention.forever()
    kind, sep, value = norm.replace("=", ":").partition(":")
    kinds = {"count": RetentionKind.COUNT, "days": RetentionKind.TIME, "time": RetentionKind.TIME}
    if not sep or kind not in kinds or not value.strip().isdigit():
        raise UsageError(f"retention {text!r} is not understood; use count:N, days:N or forever")
    try:
        return Retention(kind=kinds[kind], value=int(value))
    except ValidationError as e:
        raise _model_error("retention", text, e) from None


def format_retention(r: Retention | dict) -> str:
    r = Retention.model_validate(r) if isinstance(r, dict) else r
    if r.kind is RetentionKind.FOREVER:
        return "forever"
    return f"{'count' if r.kind is RetentionKind.COUNT else 'days'}:{r.value}"


def _choice(text: str, what: str, choices: dict[str, Any], shown: str) -> Any:
    key = text.strip().lower().replace("_", "-")
    if key not in choices:
        raise UsageError(f"{what} {text!r} is not one of: {shown}")
    return choices[key]


def parse_delay(text: str) -> BackupDelayOption:
    return _choice(text, "delay option", {"keep-go-on": BackupDelayOption.KEEP_GO_ON,
                                          "stop-backup": BackupDelayOption.STOP_BACKUP},
                   "keep-go-on, stop-backup")


def parse_consistency(text: str) -> Consistency:
    crash, fs = Consistency.CRASH_CONSISTENT, Consistency.FILE_SYSTEM_CONSISTENT
    return _choice(text, "consistency", {"crash": crash, "crash-consistent": crash, "fs": fs,
                                         "file-system": fs, "file-system-consistent": fs},
                   "crash, fs (file-system-consistent)")


def parse_vm(text: str) -> VMRef:
    cluster, sep, vm = text.strip().partition("/")
    if not sep or "/" in vm:
        raise UsageError(f"vm {text!r}: write it cluster/vm")
    try:
        return VMRef(cluster=cluster, vm=vm)
    except ValidationError as e:
        raise _model_error("vm", text, e) from None


def parse_network_map(text: str) -> NetworkMapping:
    src, sep, dst = text.partition("=")
    if not sep:
        raise UsageError(f"network map {text!r}: write it source=target")
    try:
        return NetworkMapping(source=src.strip(), target=dst.strip())
    except ValidationError as e:
        raise _model_error("network map", text, e) from None


def parse_kind(text: str) -> ReplicationKind:
    intra, cross = ReplicationKind.INTRA_SITE, ReplicationKind.CROSS_SITE
    return _choice(text, "kind", {"intra": intra, "intra-site": intra, "cross": cross, "cross-site": cross},
                   "intra, cross")


def parse_naming(text: str) -> ReplicaNaming:
    """`origin` (the replica keeps the VM's name), `prefix:TEXT` or `suffix:TEXT`."""
    rule, sep, value = text.strip().partition(":")
    if not sep:
        rule, sep, value = text.strip().partition("=")
    rules = {"origin": NamingRule.ORIGIN, "prefix": NamingRule.PREFIX, "suffix": NamingRule.SUFFIX}
    key = rule.strip().lower()
    if key not in rules or (key == "origin") == bool(sep):
        raise UsageError(f"naming {text!r} is not understood; use origin, prefix:TEXT or suffix:TEXT")
    if key == "origin":
        return ReplicaNaming(rule=NamingRule.ORIGIN, text="")
    if not value:
        raise UsageError(f"naming {text!r}: {key} needs a text, e.g. {key}:{'dr-' if key == 'prefix' else '-dr'}")
    try:
        return ReplicaNaming(rule=rules[key], text=value)
    except ValidationError as e:
        raise _model_error("naming", text, e) from None


def format_naming(n: ReplicaNaming | dict) -> str:
    n = ReplicaNaming.model_validate(n) if isinstance(n, dict) else n
    return "origin" if n.rule is NamingRule.ORIGIN else f"{n.rule.value.lower()}:{n.text}"


def parse_ip_map(text: str) -> IPMapping:
    """`SRC=DST[/PREFIX][@GATEWAY]`: the replica's address for a source address."""
    m = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([^/@\s]+)(?:/(\d{1,3}))?(?:@([^\s]+))?\s*", text)
    if not m:
        raise UsageError(f"ip map {text!r}: write it source_ip=target_ip[/prefix][@gateway]")
    data: dict[str, Any] = {"source_ip": m[1], "target_ip": m[2], "gateway": m[4]}
    if m[3] is not None:
        data["prefix_length"] = int(m[3])
    try:
        return IPMapping(**data)
    except ValidationError as e:
        raise _model_error("ip map", text, e) from None


def format_ip_map(m: IPMapping | dict) -> str:
    m = IPMapping.model_validate(m) if isinstance(m, dict) else m
    return f"{m.source_ip}={m.target_ip}/{m.prefix_length}" + (f"@{m.gateway}" if m.gateway else "")


def parse_shutdown(text: str) -> ShutdownMode:
    return _choice(text, "source shutdown", {m.value.lower().replace("_", "-"): m for m in ShutdownMode},
                   "none, shutdown, poweroff, shutdown-with-poweroff")


def parse_duration(text: str, what: str = "duration") -> int:
    """Seconds from `3600`, `90s`, `30m`, `2h` or `1d`."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text.lower())
    if not m:
        raise UsageError(f"{what} {text!r} is not understood; use seconds or N[s|m|h|d] (e.g. 2h)")
    return int(m[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


# -- plans from options --------------------------------------------------------------------

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


def _infer(data: dict[str, Any]) -> None:
    """Fill what follows from the rest: the source cluster from the VMs (when they share
    one), the kind from the sites (same site: INTRA_SITE, else CROSS_SITE)."""
    vms = data.get("vms")
    if not data.get("source_cluster") and isinstance(vms, list):
        clusters = {v.get("cluster") for v in vms if isinstance(v, dict)}
        if len(clusters) == 1:
            data["source_cluster"] = clusters.pop()
    if not data.get("kind") and isinstance(data.get("source_site"), str) and isinstance(data.get("target_site"), str):
        same = data["source_site"] == data["target_site"]
        data["kind"] = ReplicationKind.INTRA_SITE if same else ReplicationKind.CROSS_SITE


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
        _infer(data)
    elif o.kind is None and (o.source_site is not None or o.target_site is not None):
        data.pop("kind", None)
        _infer(data)
    return ReplicationPlanSpec.model_validate(data)


# -- plans and inventories in YAML files ---------------------------------------------------------

def expand_plan(raw: Any, where: str) -> dict:
    """A plan as written in a file, shorthands expanded: `vms` as "cluster/vm" strings,
    compact `schedule`/`full_schedule`/`window`/`retention`/`delay_option`/`consistency`,
    and a plan-level `time_zone` applied to both schedules."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a backup plan is a mapping of fields, not {type(raw).__name__}")
    data = dict(raw)
    zone = data.pop("time_zone", None)
    if isinstance(data.get("vms"), list):
        data["vms"] = [parse_vm(v).model_dump() if isinstance(v, str) else v for v in data["vms"]]
    for key in ("schedule", "full_schedule"):
        value = data.get(key)
        if isinstance(value, str):
            data[key] = parse_schedule(value, zone, key).model_dump(mode="json")
        elif isinstance(value, dict) and zone and "time_zone" not in value:
            data[key] = {**value, "time_zone": zone}
    if isinstance(data.get("window"), str):
        data["window"] = parse_window(data["window"]).model_dump(mode="json")
    if isinstance(data.get("retention"), str):
        data["retention"] = parse_retention(data["retention"]).model_dump()
    if isinstance(data.get("delay_option"), str) and data["delay_option"] not in set(BackupDelayOption):
        data["delay_option"] = parse_delay(data["delay_option"])
    if isinstance(data.get("consistency"), str) and data["consistency"] not in set(Consistency):
        data["consistency"] = parse_consistency(data["consistency"])
    return data


def expand_replication_plan(raw: Any, where: str) -> dict:
    """A replication plan as written in a file, shorthands expanded: `vms` as "cluster/vm",
    compact `schedule`/`window`/`retention`/`consistency`, `kind` as intra/cross (or left
    out: it follows from the sites), `source_cluster` left out (it follows from the VMs),
    `naming` as origin/prefix:TEXT/suffix:TEXT, `network_mapping` and `ip_mapping` entries
    as "src=dst" strings, and a plan-level `time_zone`."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a replication plan is a mapping of fields, not {type(raw).__name__}")
    data = dict(raw)
    zone = data.pop("time_zone", None)
    if isinstance(data.get("vms"), list):
        data["vms"] = [parse_vm(v).model_dump() if isinstance(v, str) else v for v in data["vms"]]
    value = data.get("schedule")
    if isinstance(value, str):
        data["schedule"] = parse_schedule(value, zone, "schedule").model_dump(mode="json")
    elif isinstance(value, dict) and zone and "time_zone" not in value:
        data["schedule"] = {**value, "time_zone": zone}
    if isinstance(data.get("window"), str):
        data["window"] = parse_window(data["window"]).model_dump(mode="json")
    if isinstance(data.get("retention"), str):
        data["retention"] = parse_retention(data["retention"]).model_dump()
    if isinstance(data.get("consistency"), str) and data["consistency"] not in set(Consistency):
        data["consistency"] = parse_consistency(data["consistency"])
    if isinstance(data.get("kind"), str) and data["kind"] not in set(ReplicationKind):
        data["kind"] = parse_kind(data["kind"])
    if isinstance(data.get("naming"), str):
        data["naming"] = parse_naming(data["naming"]).model_dump(mode="json")
    for key, parse in (("network_mapping", parse_network_map), ("ip_mapping", parse_ip_map)):
        if isinstance(data.get(key), list):
            data[key] = [parse(m).model_dump() if isinstance(m, str) else m for m in data[key]]
    _infer(data)
    return data


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}:{at} not valid YAML: {getattr(e, 'problem', None) or e}") from None


def _validated(model: Any, data: Any, where: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"{where}: {validation_message(e)}") from None


def load_plan_file(path: str | Path, name: str | None = None) -> BackupPlanSpec:
    """One BackupPlanSpec from YAML (shorthands allowed); `name` fills or must match its name."""
    raw = read_yaml(path)
    try:
        data = expand_plan(raw, str(path)) if raw is not None else {}
    except UsageError as e:
        raise UsageError(e.args[0] if str(e).startswith(str(path)) else f"{path}: {e}") from None
    if name is not None:
        if data.setdefault("name", name) != name:
            raise UsageError(f"{path} describes plan {data['name']!r}, not {name!r}")
    return _validated(BackupPlanSpec, data, str(path))


def load_replication_plan_file(path: str | Path, name: str | None = None) -> ReplicationPlanSpec:
    """One ReplicationPlanSpec from YAML (shorthands allowed); `name` fills or must match its name."""
    raw = read_yaml(path)
    try:
        data = expand_replication_plan(raw, str(path)) if raw is not None else {}
    except UsageError as e:
        raise UsageError(e.args[0] if str(e).startswith(str(path)) else f"{path}: {e}") from None
    if name is not None:
        if data.setdefault("name", name) != name:
            raise UsageError(f"{path} describes plan {data['name']!r}, not {name!r}")
    return _validated(ReplicationPlanSpec, data, str(path))


@dataclass
class ApplyFile:
    sites: list[Site]
    clusters: list[Cluster]
    repositories: list[RepositorySpec]
    backup_plans: list[BackupPlanSpec]
    replication_plans: list[ReplicationPlanSpec]


SECTIONS = ("sites", "clusters", "repositories", "backup_plans", "replication_plans")


def local_cluster_dir(data_dir: Path, name: str) -> str:
    return str((data_dir / "clusters" / name).absolute())


def cluster_from(raw: Any, where: str, data_dir: Path, base: Path | None = None) -> Cluster:
    """A cluster from `name, site, driver, path|endpoint`: a local cluster's path defaults to
    <data_dir>/clusters/<name>; relative paths are taken from `base` (the file's folder)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a cluster is a mapping (name, site, driver, path)")
    data = dict(raw)
    path = data.pop("path", None)
    if path is not None and data.get("endpoint"):
        raise UsageError(f"{where}: give path or endpoint, not both")
    if path is not None:
        data["endpoint"] = str(((base or Path.cwd()) / path).absolute())
    if data.get("driver", "local") == "local" and not data.get("endpoint") and isinstance(data.get("name"), str):
        data["endpoint"] = local_cluster_dir(data_dir, data["name"])
    return _validated(Cluster, data, where)


def load_apply_file(path: str | Path, data_dir: Path) -> ApplyFile:
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UsageError(f"{path}: expected a mapping with {', '.join(SECTIONS)}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise UsageError(f"{path}: unknown section(s) {unknown}; expected {', '.join(SECTIONS)}")
    base = Path(path).absolute().parent
    lists: dict[str, list] = {}
    for section in SECTIONS:
        items = raw.get(section) or []
        if not isinstance(items, list):
            raise UsageError(f"{path}: {section} must be a list")
        lists[section] = items

    def where(section: str, i: int, item: Any) -> str:
        name = item.get("name") if isinstance(item, dict) else None
        return f"{path}: {section}[{i}]" + (f" ({name})" if name else "")

    def repo(item: Any, w: str) -> RepositorySpec:
        if isinstance(item, dict) and isinstance(item.get("path"), str):
            item = {**item, "path": str((base / item["path"]).absolute())}
        return _validated(RepositorySpec, item, w)

    def plan(item: Any, w: str) -> BackupPlanSpec:
        try:
            data = expand_plan(item, w)
        except UsageError as e:
            raise UsageError(e.args[0] if str(e).startswith(w) else f"{w}: {e}") from None
        return _validated(BackupPlanSpec, data, w)

    def replication_plan(item: Any, w: str) -> ReplicationPlanSpec:
        try:
            data = expand_replication_plan(item, w)
        except UsageError as e:
            raise UsageError(e.args[0] if str(e).startswith(w) else f"{w}: {e}") from None
        return _validated(ReplicationPlanSpec, data, w)

    out = ApplyFile(
        sites=[_validated(Site, s, where("sites", i, s)) for i, s in enumerate(lists["sites"])],
        clusters=[cluster_from(c, where("clusters", i, c), data_dir, base) for i, c in enumerate(lists["clusters"])],
        repositories=[repo(r, where("repositories", i, r)) for i, r in enumerate(lists["repositories"])],
        backup_plans=[plan(p, where("backup_plans", i, p)) for i, p in enumerate(lists["backup_plans"])],
        replication_plans=[replication_plan(p, where("replication_plans", i, p))
                           for i, p in enumerate(lists["replication_plans"])],
    )
    for section in SECTIONS:
        names = [x.name for x in getattr(out, section)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise UsageError(f"{path}: {section} names repeat: {dup}")
    return out
