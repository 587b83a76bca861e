"""`abdr apply -f plans.yaml`: declare sites, clusters, repositories, backup plans and
replication plans in a file; create what is missing, update plans that differ, leave the
rest. Applying the same file twice changes nothing the second time."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import BaseModel

from starter.cli.common import cli_errors, with_client
from starter.cli.options import JsonOpt
from starter.cli.plan_files import ApplyFile, load_apply_file
from starter.cli.render import emit, say, table

if TYPE_CHECKING:
    from starter.client import AbdrClient

CANNOT_UPDATE = "differs from the catalog ({}); abdr cannot change a {} in place: left as is"


def _differs(have: BaseModel, want: dict, fields: tuple[str, ...]) -> list[str]:
    dumped = have.model_dump(mode="json")
    return [f for f in fields if dumped.get(f) != want.get(f)]


async def check_file(c: AbdrClient, f: ApplyFile) -> None:
    """Every entry's references resolve against the file and the catalog, and the VMs of plans
    on clusters the catalog has exist, before anything is changed: the first wrong entry is
    named with why, and nothing is applied. (VMs on clusters the file adds are checked when
    their plan is created: abdr can ask a cluster only once it knows it.)"""
    from starter.client import AbdrError, NotFound

    sites = {s.name for s in f.sites} | {s.name for s in await c.list_sites()}
    known = {x.name: x.site for x in await c.list_clusters()}
    clusters = {**{x.name: x.site for x in f.clusters}, **known}  # an existing cluster keeps its site
    repositories = {r.name for r in f.repositories} | {r.name for r in await c.list_repositories()}

    def refuse(section: str, name: str, why: str) -> NotFound:
        return NotFound(f"{f.where[(section, name)]}: {why}; nothing was applied")

    for section, entries in (("clusters", f.clusters), ("repositories", f.repositories)):
        for entry in entries:
            if entry.site not in sites:
                raise refuse(section, entry.name, f"site {entry.site!r} is neither in the file nor in the catalog")
    plans: list[tuple[str, str, list[tuple[str, str | None]], list[Any]]] = [
        ("backup_plans", p.name, [(v.cluster, None) for v in p.vms], p.vms) for p in f.backup_plans]
    plans += [("replication_plans", p.name, [(p.source_cluster, p.source_site), (p.target_cluster, p.target_site)],
               p.vms) for p in f.replication_plans]
    for p in f.backup_plans:
        if p.repository not in repositories:
            raise refuse("backup_plans", p.name,
                         f"repository {p.repository!r} is neither in the file nor in the catalog")
    for section, name, refs, vms in plans:
        for cluster, site in refs:
            if cluster not in clusters:
                raise refuse(section, name, f"cluster {cluster!r} is neither in the file nor in the catalog")
            if site is not None and clusters[cluster] != site:
                raise refuse(section, name, f"cluster {cluster!r} is in site {clusters[cluster]!r}, not {site!r}")
        try:
            await c.check_vms([v for v in vms if v.cluster in known])
        except AbdrError as e:
            raise e.reworded(f"{f.where[(section, name)]}: {e}; nothing was applied") from None


async def apply_file(c: AbdrClient, f: ApplyFile, done: list[dict[str, Any]]) -> None:
    """Apply in dependency order, appending one row per object to `done` as it goes."""
    await check_file(c, f)

    def record(kind: str, name: str, action: str, note: str = "") -> None:
        done.append({"kind": kind, "name": name, "action": action, "note": note})

    sections: list[tuple[str, list[Any], Any, tuple[str, ...]]] = [
        ("site", f.sites, c.list_sites, ("description",)),
        ("cluster", f.clusters, c.list_clusters, ("site", "driver", "endpoint")),
        ("repository", f.repositories, c.list_repositories, ("kind", "path", "site", "description")),
    ]
    for kind, wanted, lister, fields in sections:
        existing = {x.name: x for x in await lister()} if wanted else {}
        for obj in wanted:
            if obj.name not in existing:
                if kind == "site":
                    await c.add_site(obj.name, obj.description)
                elif kind == "cluster":
                    await c.add_cluster(obj.name, obj.site, obj.driver, obj.endpoint)
                else:
                    await c.create_repository(obj)
                record(kind, obj.name, "created")
                continue
            declared = obj.model_dump(mode="json", exclude_unset=True)  # compare what the file says
            diff = _differs(existing[obj.name], declared, tuple(f for f in fields if f in declared))
            record(kind, obj.name, "unchanged", CANNOT_UPDATE.format(", ".join(diff), kind) if diff else "")
    plan_sections: list[tuple[str, list[Any], Any, Any, Any]] = [
        ("backup_plan", f.backup_plans, c.list_backup_plans, c.create_backup_plan, c.update_backup_plan),
        ("replication_plan", f.replication_plans, c.list_replication_plans, c.create_replication_plan,
         c.update_replication_plan),
    ]
    for kind, wanted, lister, create, update in plan_sections:
        plans = {p.spec.name: p.spec for p in await lister()} if wanted else {}
        for spec in wanted:
            if spec.name not in plans:
                await create(spec)
                record(kind, spec.name, "created")
                continue
            have = plans[spec.name].model_dump(mode="json")
            want = spec.model_dump(mode="json")
            if have == want:
                record(kind, spec.name, "unchanged")
            else:
                await update(spec)
                changed = sorted(k for k in want if have.get(k) != want[k])
                record(kind, spec.name, "updated", f"changed: {', '.join(changed)}")


def _render(rows: list[dict]) -> None:
    table(rows, ["kind", "name", "action", "note"], "apply")
    counts = {a: sum(r["action"] == a for r in rows) for a in ("created", "updated", "unchanged")}
    say(", ".join(f"{n} {a}" for a, n in counts.items()))


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="YAML with sites:, clusters:, repositories:, "
                                                            "backup_plans:, replication_plans: lists.",
                                       exists=True, dir_okay=False)],
    as_json: JsonOpt = False,
) -> None:
    """Create what the file declares and is missing; update plans that differ (idempotent)."""
    with cli_errors():
        from starter.runtime.settings import get_settings

        declared = load_apply_file(file, get_settings().data_dir)
        done: list[dict[str, Any]] = []
        try:
            with_client(lambda c: apply_file(c, declared, done))
        except BaseException:
            if done and not as_json:
                _render(done)  # what was applied before the failure
            raise
        emit(done, as_json, _render)
