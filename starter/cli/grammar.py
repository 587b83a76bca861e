"""The compact grammar of plan fields, shared by the command line (plan_options.py) and
YAML files (plan_files.py): each form parsed into its domain model (`models.schedule`,
`models.plans`, `models.retention`), which does the validating, and formatted back.

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
from typing import Any

from pydantic import ValidationError

from models.inventory import Consistency, ShutdownMode
from models.plans import BackupDelayOption, VMRef
from models.replication import IPMapping, NamingRule, NetworkMapping, ReplicaNaming, ReplicationKind
from models.retention import Retention, RetentionKind
from models.schedule import Schedule, ScheduleKind, Weekday, Window
from starter.cli.render import validation_message


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


def infer_source_and_kind(data: dict[str, Any]) -> None:
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
