"""`abdr up`'s AOC demo (ABDR_DEMO_AOC=true): two AOC SIMULATORS (`abdr aoc-sim`, test
doubles, not real AOCs) on 127.0.0.1 (ABDR_DEMO_AOC_PORTS), one per site (ABDR_SITE and the
first extra site), their state under <data dir>/aoc-sim/<site>; a cluster in each
(`aoc-<site>`), two small VMs with deterministic data on the first, a backup plan
`demo-aoc` and a CROSS_SITE replication plan `demo-aoc-dr` to the second, every 5 minutes.
The simulators' account goes into a secrets file the workers read (ABDR_AOC_SECRETS_FILE,
unless one is set already). Each step checks what exists, so a restart completes a seed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from drivers.fsio import atomic_write_json
from models.inventory import DiskSpec, VMConfig
from models.plans import VMRef
from models.replication import ReplicationKind, ReplicationPlanSpec
from models.retention import Retention
from models.schedule import Schedule, ScheduleKind
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from starter.stack.demo import ensure_repository, plan_spec
from starter.stack.errors import StackError
from starter.stack.sites import extra_sites

PLAN, DR_PLAN, VMS = "demo-aoc", "demo-aoc-dr", ("aoc-web", "aoc-db")
DISK_BYTES = 16 << 20
START_S = 60.0
ACCOUNT = {"username": "root", "password": "root", "source": "LOCAL"}  # the simulator's default


@dataclass
class SimSite:
    site: str
    url: str
    proc: subprocess.Popen[bytes]

    @property
    def cluster(self) -> str:
        return f"aoc-{self.site}"


def sites(settings: Settings) -> list[str]:
    extra = extra_sites(settings)
    if not extra:
        raise StackError("ABDR_DEMO_AOC needs a second site: set ABDR_EXTRA_SITES (default dr)")
    return [settings.site, extra[0]]


def start_simulators(settings: Settings, die_with_parent: Callable[[], object]) -> list[SimSite]:
    """Start one simulator per demo site and wait until each answers; their account goes
    into the secrets file the workers read."""
    from starter.stack.up import port_in_use

    out: list[SimSite] = []
    try:
        for site, port in zip(sites(settings), settings.demo_aoc_ports, strict=True):
            if port_in_use("127.0.0.1", port):
                raise StackError(f"port {port} (ABDR_DEMO_AOC_PORTS) is in use: the AOC demo's simulator for "
                                 f"site {site} cannot start")
            state = settings.data_dir.absolute() / "aoc-sim" / site
            state.mkdir(parents=True, exist_ok=True)
            log = (state / "sim.log").open("ab")
            proc = subprocess.Popen([sys.executable, "-m", "starter.cli", "aoc-sim", "--port", str(port),
                                     "--state", str(state / "state")], stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
            out.append(SimSite(site, f"http://127.0.0.1:{port}", proc))
        for s in out:
            _wait_healthy(s, settings)
    except BaseException:
        stop_simulators(out)
        raise
    if not os.environ.get("ABDR_AOC_SECRETS_FILE"):
        secrets = settings.data_dir.absolute() / "aoc-sim" / "secrets.json"
        atomic_write_json(secrets, {s.url: ACCOUNT for s in out})
        secrets.chmod(0o600)
        os.environ["ABDR_AOC_SECRETS_FILE"] = str(secrets)
    return out


def _wait_healthy(s: SimSite, settings: Settings) -> None:
    deadline = time.monotonic() + START_S
    while True:
        try:
            httpx.get(f"{s.url}/sim/health", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if s.proc.poll() is not None or time.monotonic() > deadline:
                log = settings.data_dir / "aoc-sim" / s.site / "sim.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise StackError(f"the AOC simulator for site {s.site} did not start: {tail}") from None
            time.sleep(0.2)


def stop_simulators(sims: list[SimSite]) -> None:
    for s in sims:
        if s.proc.poll() is None:
            s.proc.terminate()
    for s in sims:
        try:
            s.proc.wait(30)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait()


def _cluster_id(url: str) -> str:
    """The id of the simulator's first cluster (`cluster-1`, made on its first start)."""
    with httpx.Client(base_url=url, timeout=10) as c:
        token = c.post("/v2/api/login", json=ACCOUNT).raise_for_status().json()["data"]["token"]
        rows = c.post("/v2/api/get-clusters", json={"where": {"name": "cluster-1"}},
                      headers={"Authorization": token}).raise_for_status().json()
    if not rows:
        raise StackError(f"the AOC simulator at {url} has no cluster-1")
    return str(rows[0]["id"])


def _make_vms(endpoint: str, cluster: str) -> list[str]:
    from drivers.aoc import AocDriver
    from drivers.local.tools import rewrite_fraction

    driver = AocDriver(endpoint, cluster)
    made = []
    for seed, name in enumerate(VMS, start=11):
        if driver.find_vm(name) is None:
            vm = driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=DISK_BYTES,
                                                                      boot=True)]))
            rewrite_fraction(driver, vm.id, "disk0", 0.5, seed=seed)
            made.append(name)
    return made


async def seed_aoc_demo(client: AbdrClient, settings: Settings, sims: list[SimSite], repository: str) -> list[str]:
    if not sims:
        return []
    clusters = {c.name for c in await client.list_clusters()}
    endpoints = {}
    for s in sims:
        endpoints[s.site] = f"{s.url}#{await asyncio.to_thread(_cluster_id, s.url)}"
        if s.cluster not in clusters:
            await client.add_cluster(s.cluster, s.site, "aoc", endpoints[s.site])
    src, dst = sims
    made = await asyncio.to_thread(_make_vms, endpoints[src.site], src.cluster)
    await ensure_repository(client, settings, repository)
    lines = [f"AOC demo seeded (ABDR_DEMO_AOC): AOC SIMULATORS {src.url} (site {src.site}, cluster "
             f"{src.cluster}) and {dst.url} (site {dst.site}, cluster {dst.cluster})",
             f"  VMs {', '.join(VMS)} on {src.cluster} ({DISK_BYTES >> 20} MiB each"
             f"{'' if made else ', already there'})"]
    if PLAN not in {p.spec.name for p in await client.list_backup_plans()}:
        await client.create_backup_plan(plan_spec(PLAN, src.cluster, VMS, repository, "AOC demo plan seeded by abdr up"))
    lines.append(f"  backup plan {PLAN}: every 5 minutes; abdr backup-plan run {PLAN} --wait")
    if DR_PLAN not in {p.spec.name for p in await client.list_replication_plans()}:
        await client.create_replication_plan(ReplicationPlanSpec(
            name=DR_PLAN, description="AOC demo replication plan seeded by abdr up", kind=ReplicationKind.CROSS_SITE,
            source_site=src.site, source_cluster=src.cluster, target_site=dst.site, target_cluster=dst.cluster,
            vms=[VMRef(cluster=src.cluster, vm=v) for v in VMS],
            schedule=Schedule(kind=ScheduleKind.MINUTELY, interval=5), retention=Retention.count(3)))
    lines.append(f"  replication plan {DR_PLAN}: {src.cluster} -> {dst.cluster}; "
                 f"abdr replication-plan run {DR_PLAN} --wait")
    return lines
