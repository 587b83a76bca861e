"""The demo `abdr up` seeds on a fresh catalog (ABDR_DEMO, default on): a local cluster with
three small VMs holding deterministic data, a repository, and a backup plan over them that
runs every 5 minutes. Skipped as soon as any backup plan exists; each step also checks
what exists, so a seed interrupted halfway completes on the next start.

Its disaster-recovery half: when `abdr up` runs an extra site (ABDR_EXTRA_SITES, default
`dr`), a local cluster `<site>-local` there and a CROSS_SITE replication plan `demo-dr`
replicating `web` and `db` to it every 5 minutes. Skipped as soon as any replication plan
exists, or when the demo VMs are not there."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from drivers.fsio import atomic_write_json
from drivers.local.tools import rewrite_fraction
from models.inventory import DiskSpec, VMConfig
from models.plans import BackupPlanSpec, VMRef
from models.replication import ReplicationKind, ReplicationPlanSpec
from models.retention import Retention
from models.schedule import Schedule, ScheduleKind
from models.services import RepositorySpec
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from starter.stack.demo_libvirt import seed_libvirt_demo
from starter.stack.sites import extra_sites

if TYPE_CHECKING:
    from starter.stack.demo_aoc import SimSite

log = structlog.get_logger("abdr.demo")
CLUSTER, REPOSITORY, PLAN = "local", "main", "demo"
SEED_TIMEOUT_S = 300
VMS = ("web", "db", "app")
DISK_BYTES = 64 << 20
DR_PLAN, DR_VMS = "demo-dr", ("web", "db")


def _make_vms(root: Path) -> list[str]:
    """Create the demo VMs that are missing, each disk written through the driver's
    copy-on-write path with `rewrite_fraction` (seeded: the same data on every machine)."""
    from drivers.local import LocalDriver

    driver = LocalDriver(root, CLUSTER)
    made = []
    for seed, name in enumerate(VMS, start=1):
        if driver.find_vm(name) is not None:
            continue
        vm = driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=DISK_BYTES, boot=True)]))
        rewrite_fraction(driver, vm.id, "disk0", 1.0, seed=seed)
        made.append(name)
    return made


def plan_spec(name: str, cluster: str, vms: tuple[str, ...], repository: str, description: str) -> BackupPlanSpec:
    """A demo backup plan: every 5 minutes, the last 6 points per VM kept."""
    return BackupPlanSpec(
        name=name, description=description, backup_service="default",
        vms=[VMRef(cluster=cluster, vm=v) for v in vms], repository=repository,
        schedule=Schedule(kind=ScheduleKind.MINUTELY, interval=5), retention=Retention.count(6))


def demo_plan() -> BackupPlanSpec:
    return plan_spec(PLAN, CLUSTER, VMS, REPOSITORY, "demo plan seeded by abdr up")


async def ensure_repository(client: AbdrClient, settings: Settings, name: str) -> Path:
    """The demo repository `name` under the data dir, registered in the site if missing."""
    repo_dir = settings.data_dir.absolute() / "repositories" / name
    if name not in {r.name for r in await client.list_repositories()}:
        repo_dir.parent.mkdir(parents=True, exist_ok=True)
        await client.create_repository(RepositorySpec(name=name, path=str(repo_dir), site=settings.site))
    return repo_dir


async def seed_demo(client: AbdrClient, settings: Settings) -> list[str]:
    """Seed the demo if the catalog has no backup plan; returns lines saying what was done."""
    if await client.list_backup_plans():
        return []
    data = settings.data_dir.absolute()
    cluster_dir = data / "clusters" / CLUSTER
    if CLUSTER not in {c.name for c in await client.list_clusters()}:
        await client.add_cluster(CLUSTER, settings.site, "local", str(cluster_dir))
    made = await asyncio.to_thread(_make_vms, cluster_dir)  # keep the workers' event loop free
    repo_dir = await ensure_repository(client, settings, REPOSITORY)
    await client.create_backup_plan(demo_plan())
    return [
        f"Demo seeded (ABDR_DEMO=false to skip): cluster {CLUSTER} at {cluster_dir}",
        f"  VMs {', '.join(VMS)} ({DISK_BYTES >> 20} MiB each{'' if made else ', already there'}), "
        f"repository {REPOSITORY} at {repo_dir}",
        f"  backup plan {PLAN}: every 5 minutes, keep the last 6 points per VM",
        f"  abdr backup-plan run {PLAN} --wait   # a backup now",
    ]


def demo_dr_plan(source_site: str, target_site: str, target_cluster: str) -> ReplicationPlanSpec:
    return ReplicationPlanSpec(
        name=DR_PLAN, description="demo replication plan seeded by abdr up", kind=ReplicationKind.CROSS_SITE,
        source_site=source_site, source_cluster=CLUSTER, target_site=target_site, target_cluster=target_cluster,
        vms=[VMRef(cluster=CLUSTER, vm=v) for v in DR_VMS],
        schedule=Schedule(kind=ScheduleKind.MINUTELY, interval=5), retention=Retention.count(3))


async def seed_dr_demo(client: AbdrClient, settings: Settings) -> list[str]:
    """Seed the DR half if the catalog has no replication plan and `abdr up` runs an extra
    site; returns lines saying what was done."""
    served = [settings.site, *extra_sites(settings)]
    if len(served) < 2 or await client.list_replication_plans():
        return []
    clusters = {c.name: c for c in await client.list_clusters()}
    source = clusters.get(CLUSTER)
    if source is None or source.site not in served:
        return []
    target_site = next(s for s in served if s != source.site)
    have = {v.name for v in await client.list_vms(CLUSTER, source.site)}
    if not set(DR_VMS) <= have:
        return []
    target = f"{target_site}-local"
    target_dir = settings.data_dir.absolute() / "clusters" / target
    if target not in clusters:
        await client.add_cluster(target, target_site, "local", str(target_dir))
    elif clusters[target].site != target_site:
        return [f"Demo DR seed skipped: cluster {target} is in site {clusters[target].site}, not {target_site}"]
    await client.create_replication_plan(demo_dr_plan(source.site, target_site, target))
    return [
        f"Demo DR seeded: site {target_site}, cluster {target} at {target_dir}",
        f"  replication plan {DR_PLAN}: {', '.join(DR_VMS)} from {CLUSTER} (site {source.site}) to {target}, "
        "every 5 minutes, keep the last 3 replica points",
        f"  abdr replication-plan run {DR_PLAN} --wait   # replicate now",
        f"  abdr failover {DR_PLAN} web --source-shutdown poweroff --wait; abdr failback {DR_PLAN} web --wait",
    ]


def demo_state_file(settings: Settings) -> Path:
    """Where `abdr up` says how far the demo is, for `abdr status` (same host, same data dir)."""
    return settings.data_dir / "demo-state.json"


def write_demo_state(settings: Settings, state: str, lines: list[str] | None = None) -> None:
    atomic_write_json(demo_state_file(settings), {"state": state, "lines": lines or [], "pid": os.getpid()})


def read_demo_state(settings: Settings) -> dict | None:
    """{state: seeding | ready | failed, lines}, or None when no `abdr up` seeds a demo here
    (none wrote one, or the one that did is gone: killed, it could not remove the file)."""
    try:
        state = json.loads(demo_state_file(settings).read_text())
        os.kill(state.pop("pid"), 0)
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ProcessLookupError):
        return None
    return state


async def seed_in_stack(settings: Settings, workers: asyncio.Task, stop: asyncio.Event,
                        aoc: list[SimSite] | None = None) -> list[str]:
    """`abdr up`'s call: seed while the workers run (`aoc`: the AOC demo's simulators). A
    failure is reported, never fatal; a stop (Ctrl-C) or the workers ending abandons the seed
    instead of waiting on it. The demo's state is written for `abdr status` as it goes."""
    write_demo_state(settings, "seeding")
    lines = await _seed_or_report(settings, workers, stop, aoc or [])
    failed = any("failed" in line or "did not finish" in line for line in lines)
    write_demo_state(settings, "failed" if failed else "ready", lines)
    return lines


async def _seed_or_report(settings: Settings, workers: asyncio.Task, stop: asyncio.Event,
                          aoc: list[SimSite]) -> list[str]:
    seed = asyncio.ensure_future(_connect_and_seed(settings, aoc))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({seed, workers, stopped}, timeout=SEED_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if seed not in done:
        seed.cancel()
        return [] if stop.is_set() or workers.done() else [f"Demo seed did not finish in {SEED_TIMEOUT_S} s"]
    try:
        return seed.result()
    except Exception as e:
        log.warning("demo seed failed", error=str(e))
        return [f"Demo seed failed: {e}"]


async def _connect_and_seed(settings: Settings, aoc: list[SimSite]) -> list[str]:
    from starter.stack.demo_aoc import seed_aoc_demo

    client = await AbdrClient.connect(settings)
    lines = await seed_demo(client, settings) if settings.demo else []
    try:
        lines += await seed_dr_demo(client, settings) if settings.demo else []
    except Exception as e:  # the backup half stands on its own
        log.warning("demo DR seed failed", error=str(e))
        lines.append(f"Demo DR seed failed: {e}")
    try:
        lines += await seed_libvirt_demo(client, settings, REPOSITORY)
    except Exception as e:  # so does the local demo, when this host's libvirt is not ready
        log.warning("libvirt demo seed failed", error=str(e))
        lines.append(f"libvirt demo seed failed (run scripts/ensure-hypervisor.sh .venv?): {e}")
    try:
        lines += await seed_aoc_demo(client, settings, aoc, REPOSITORY)
    except Exception as e:
        log.warning("AOC demo seed failed", error=str(e))
        lines.append(f"AOC demo seed failed: {e}")
    return lines
