"""Plans and inventories in YAML files: `-f plan.yaml` for one plan, `abdr apply -f` for
sites, clusters, repositories and plans. Fields may be written in the compact grammar
(grammar.py); each file's errors name the file, the entry and the rule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from drivers import DRIVERS, join_cluster_id, join_endpoint
from drivers.base import DriverError
from models.inventory import Cluster, Consistency, Site, repeated
from models.plans import BackupDelayOption, BackupPlanSpec
from models.replication import ReplicationKind, ReplicationPlanSpec
from models.services import RepositorySpec
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
from starter.cli.render import validation_message

M = TypeVar("M", bound=BaseModel)


def _expand_shared(raw: Any, where: str, what: str, schedules: tuple[str, ...]) -> dict:
    """The fields both plan kinds share, as a file writes them (options have theirs in
    plan_options.shared_fields; both parse with grammar.py): `vms` as "cluster/vm" strings,
    compact schedules, `window` and `retention`, and a plan-level `time_zone` applied to
    the schedules."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a {what} is a mapping of fields, not {type(raw).__name__}")
    data = dict(raw)
    zone = data.pop("time_zone", None)
    if isinstance(data.get("vms"), list):
        data["vms"] = [parse_vm(v).model_dump() if isinstance(v, str) else v for v in data["vms"]]
    for key in schedules:
        value = data.get(key)
        if isinstance(value, str):
            data[key] = parse_schedule(value, zone, key).model_dump(mode="json")
        elif isinstance(value, dict) and zone and "time_zone" not in value:
            data[key] = {**value, "time_zone": zone}
    if isinstance(data.get("window"), str):
        data["window"] = parse_window(data["window"]).model_dump(mode="json")
    if isinstance(data.get("retention"), str):
        data["retention"] = parse_retention(data["retention"]).model_dump()
    return data


def _expand_consistency(data: dict) -> None:
    if isinstance(data.get("consistency"), str) and data["consistency"] not in set(Consistency):
        data["consistency"] = parse_consistency(data["consistency"])


def expand_plan(raw: Any, where: str) -> dict:
    """A backup plan as written in a file, shorthands expanded: the shared fields (with
    `full_schedule` a schedule too), compact `delay_option` and `consistency`."""
    data = _expand_shared(raw, where, "backup plan", ("schedule", "full_schedule"))
    if isinstance(data.get("delay_option"), str) and data["delay_option"] not in set(BackupDelayOption):
        data["delay_option"] = parse_delay(data["delay_option"])
    _expand_consistency(data)
    return data


def expand_replication_plan(raw: Any, where: str) -> dict:
    """A replication plan as written in a file, shorthands expanded: the shared fields,
    compact `consistency`, `kind` as intra/cross (or left out: it follows from the sites),
    `source_cluster` left out (it follows from the VMs), `naming` as
    origin/prefix:TEXT/suffix:TEXT, `network_mapping` and `ip_mapping` entries as
    "src=dst" strings."""
    data = _expand_shared(raw, where, "replication plan", ("schedule",))
    _expand_consistency(data)
    if isinstance(data.get("kind"), str) and data["kind"] not in set(ReplicationKind):
        data["kind"] = parse_kind(data["kind"])
    if isinstance(data.get("naming"), str):
        data["naming"] = parse_naming(data["naming"]).model_dump(mode="json")
    for key, parse in (("network_mapping", parse_network_map), ("ip_mapping", parse_ip_map)):
        if isinstance(data.get(key), list):
            data[key] = [parse(m).model_dump() if isinstance(m, str) else m for m in data[key]]
    infer_source_and_kind(data)
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


def _validated(model: type[M], data: Any, where: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UsageError(f"{where}: {validation_message(e)}") from None


def _load_plan(path: str | Path, name: str | None, expand: Callable[[Any, str], dict], model: type[M]) -> M:
    """One plan spec from YAML, expanded by its kind's `expand` and validated by `model`;
    `name` fills or must match its name."""
    raw = read_yaml(path)
    try:
        data = expand(raw, str(path)) if raw is not None else {}
    except UsageError as e:
        raise UsageError(e.args[0] if str(e).startswith(str(path)) else f"{path}: {e}") from None
    if name is not None:
        if data.setdefault("name", name) != name:
            raise UsageError(f"{path} describes plan {data['name']!r}, not {name!r}")
    return _validated(model, data, str(path))


def load_plan_file(path: str | Path, name: str | None = None) -> BackupPlanSpec:
    """One BackupPlanSpec from YAML (shorthands allowed); `name` fills or must match its name."""
    return _load_plan(path, name, expand_plan, BackupPlanSpec)


def load_replication_plan_file(path: str | Path, name: str | None = None) -> ReplicationPlanSpec:
    """One ReplicationPlanSpec from YAML (shorthands allowed); `name` fills or must match its name."""
    return _load_plan(path, name, expand_replication_plan, ReplicationPlanSpec)


@dataclass
class ApplyFile:
    sites: list[Site]
    clusters: list[Cluster]
    repositories: list[RepositorySpec]
    backup_plans: list[BackupPlanSpec]
    replication_plans: list[ReplicationPlanSpec]
    # (section, name) -> where the entry is, e.g. "plans.yaml: backup_plans[1] (gold)": errors found
    # against the catalog name the entry as the file's own errors do.
    where: dict[tuple[str, str], str] = field(default_factory=dict)


SECTIONS = ("sites", "clusters", "repositories", "backup_plans", "replication_plans")


def default_endpoint(driver: str, data_dir: Path, name: str) -> str:
    """The endpoint of a cluster added without one: its driver's default under the data
    directory (local: <data_dir>/clusters/<name>), or none."""
    kind = DRIVERS.get(driver)
    return kind.default_endpoint(data_dir, name) if kind and kind.default_endpoint else ""


def local_cluster_dir(data_dir: Path, name: str) -> str:
    return default_endpoint("local", data_dir, name)


def known_driver(driver: str, where: str) -> str:
    """`driver` if the registry has it (checked here too, so a file's error names its entry)."""
    if driver not in DRIVERS:
        raise UsageError(f"{where}: driver: {driver!r} is not one of: {', '.join(DRIVERS)}")
    return driver


def cluster_from(raw: Any, where: str, data_dir: Path, base: Path | None = None) -> Cluster:
    """A cluster from `name, site, driver, path|endpoint[, cluster_id]`: the endpoint defaults to the
    driver's (`default_endpoint`); relative paths are taken from `base` (the file's folder)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a cluster is a mapping (name, site, driver, path)")
    data = dict(raw)
    path = data.pop("path", None)
    if path is not None:
        driver = known_driver(str(data.get("driver", "local")), where)
        try:
            data["endpoint"] = join_endpoint(driver, str(data.get("endpoint") or ""), (base or Path.cwd()) / path)
        except DriverError as e:
            raise UsageError(f"{where}: {e}") from None
    cluster_id = data.pop("cluster_id", None)
    if cluster_id is not None:
        driver = known_driver(str(data.get("driver", "local")), where)
        try:
            data["endpoint"] = join_cluster_id(driver, str(data.get("endpoint") or ""), str(cluster_id))
        except DriverError as e:
            raise UsageError(f"{where}: {e}") from None
    cluster = _validated(Cluster, data, where)
    known_driver(cluster.driver, where)
    if not cluster.endpoint:
        cluster.endpoint = default_endpoint(cluster.driver, data_dir, cluster.name)
    return cluster


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
        dup = repeated(names)
        if dup:
            raise UsageError(f"{path}: {section} names repeat: {dup}")
        out.where.update({(section, n): where(section, i, item) for i, (n, item) in enumerate(zip(names, lists[section]))})
    return out
