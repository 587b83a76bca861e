"""`python -m bench scale [--scale-vms N] [--scale-parallel P] [--scale-kind replication]`: the control plane's cost
per VM, through the whole stack: a Temporal dev server (SQLite-backed, as `abdr up` runs
it), an orchestration worker (`worker.py --no-site`) and a site worker (`worker.py --site a
--no-workflows`), each a separate process. One backup plan of N tiny VMs (256 KiB, half
written) on the local driver is run twice through the client: the first run (full
backups), then a run with nothing changed since. Per run: wall time (start to result),
CPU seconds of each process per VM (from /proc/<pid>/stat), the plan-run workflow's
history length (every run of its chain), the child workflows it started and one of them (events and activities), and
the snapshots and points the run left. A sample of VMs is restored from each run's points
and compared with the bytes written. `--scale-kind replication`: the same for a CROSS_SITE
replication plan of those VMs (a second site worker, `--site b`, and cluster cb): the seed
run, then a run with nothing changed; a sample of the newest replica points is read on the
target and compared with the bytes written."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import TOKEN, BenchError, fresh_dir, log, table, write_results
from bench.stack import DevServer, WorkerProcess, proc_cpu

TINY = 256 << 10  # a VM's one disk: two 128 KiB chunks, the first written
SAMPLE = 5  # VMs restored and compared per run


def _bytes(i: int) -> bytes:
    return random.Random(f"scale/{i}").randbytes(TINY // 2)


async def _histories(client: Any, wf_id: str, since: datetime) -> list[int]:
    """History lengths of the runs of a workflow id started since `since` (a continue-as-new
    chain has several)."""
    q = f"WorkflowId = '{wf_id}' AND StartTime >= '{since.isoformat()}'"
    return [w.history_length async for w in client.list_workflows(q)]


async def _children(client: Any, wf_id: str, since: datetime) -> list[str]:
    """The child workflow ids the runs of a chain started since `since` (their histories' record)."""
    q = f"WorkflowId = '{wf_id}' AND StartTime >= '{since.isoformat()}'"
    return [e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            async for w in client.list_workflows(q)
            async for e in client.get_workflow_handle(w.id, run_id=w.run_id).fetch_history_events()
            if e.HasField("start_child_workflow_execution_initiated_event_attributes")]


async def _child_profile(client: Any, children: list[str]) -> dict[str, int]:
    """One child's events and activities (zeros when the run started none: no VM had one)."""
    if not children:
        return {"events": 0, "activities": 0}
    events = [e async for e in client.get_workflow_handle(children[0]).fetch_history_events()]
    return {"events": len(events), "activities": sum(e.HasField("activity_task_scheduled_event_attributes")
                                                     for e in events)}


async def scale_bench(work: Path, nvms: int, parallel: int, kind: str = "backup") -> dict[str, Any]:
    from drivers.catalog.store import Catalog
    from drivers.local import LocalDriver
    from models.ids import plan_run_id, replication_run_id
    from models.inventory import DiskSpec, Site, VMConfig
    from models.plans import BackupPlanSpec, RunResult
    from models.services import BackupService, ReplicationService, RepositorySpec
    from starter.client import AbdrClient
    from starter.runtime.settings import Settings

    replication = kind == "replication"
    d = fresh_dir(work / "scale")
    logs = d / "logs"
    logs.mkdir()
    url = f"sqlite:///{d / 'catalog.db'}"
    catalog = Catalog(url)
    sites = ["a", "b"] if replication else ["a"]
    for site in sites:
        catalog.add_site(Site(name=site))
    server = DevServer(d / "temporal.db", logs / "temporal.log")
    procs: list[WorkerProcess] = []
    out: dict[str, Any] = {"kind": kind, "vms": nvms, "parallel": parallel, "disk_bytes": TINY, "runs": []}
    try:
        temporal = await server.connect()
        wenv = {"ABDR_TEMPORAL_ADDRESS": server.address, "ABDR_DATA_DIR": str(d / "state"), "ABDR_DATABASE_URL": url,
                "ABDR_SHUTDOWN_GRACE_S": "1", "ABDR_TRANSPORT_TOKEN": TOKEN, "ABDR_EMBEDDED_TEMPORAL": "false"}
        roles = [("orchestrator", ["--no-site"])] + [(f"site {s}", ["--site", s, "--no-workflows"]) for s in sites]
        for role, args in roles:
            procs.append(WorkerProcess(role, wenv, logs / f"worker-{role.replace(' ', '-')}.log", *args))
        client = AbdrClient(temporal, Settings(temporal_address=server.address, data_dir=d / "state",
                                               database_url=url))
        ca = d / "ca"
        await client.add_cluster("ca", "a", "local", str(ca))
        drv = LocalDriver(ca, "ca")
        log(f"scale: creating {nvms} VMs of {TINY >> 10} KiB")
        ids = {}
        for i in range(nvms):
            vm = drv.create_vm(VMConfig(name=f"s{i:05d}", disks=[DiskSpec(name="disk0", size_bytes=TINY, boot=True)]))
            with drv.open_disk(vm.id, "disk0", writable=True) as h:
                h.write(0, _bytes(i))
            ids[i] = vm.id
        names = [f"s{i:05d}" for i in range(nvms)]
        if replication:
            await client.add_cluster("cb", "b", "local", str(d / "cb"))
            await client.put_service(ReplicationService(name="b", site="b", max_replication_jobs=parallel))
            await client.create_replication_plan(_replication_plan("scale", names))
            wf_id, labels = replication_run_id("scale"), ("first (seed)", "no change")
        else:
            await client.create_repository(RepositorySpec(name="r1", path=str(d / "repo"), site="a"))
            await client.put_service(BackupService(name="default", site="a", max_parallel_backups=parallel))
            await client.create_backup_plan(BackupPlanSpec.model_validate({
                "name": "scale", "vms": [{"cluster": "ca", "vm": n} for n in names], "repository": "r1",
                "schedule": {"kind": "DAILY", "times": ["03:00"]}, "retention": {"kind": "COUNT", "value": 10}}))
            wf_id, labels = plan_run_id("scale"), ("first (full)", "no change")
        pids = {"dev server": server.proc.pid, **{f"worker {w.role}": w.proc.pid for w in procs}}
        for label in labels:
            log(f"scale: {kind} plan run {label}, {nvms} VMs, {parallel} at a time")
            since = datetime.now(timezone.utc)
            cpu0, t0 = proc_cpu(pids), time.perf_counter()
            if replication:
                res = await client.result(await client.run_replication_plan("scale"))
            else:
                res = await client.plan_run_result(await client.run_backup_plan("scale"))
            wall = time.perf_counter() - t0
            cpu1 = proc_cpu(pids)
            if res.result != RunResult.SUCCESS:
                raise BenchError(f"plan run {label}: {res.result}: {[v.error for v in res.vms if not v.ok][:5]}")
            hist = await _histories(temporal, wf_id, since)
            children = await _children(temporal, wf_id, since)
            child = await _child_profile(temporal, children)
            snaps = sum(len(drv.list_snapshots(v)) for v in ids.values())
            points = len(catalog.list_restore_points(plan="scale"))
            out["runs"].append({
                "run": label, "wall_s": round(wall, 2), "per_vm_ms": round(1000 * wall / nvms, 1),
                "cpu_s_per_vm": {k: round((cpu1[k] - cpu0[k]) / nvms, 4) for k in pids},
                "plan_run_histories": hist, "children": len(children), "child_events": child["events"],
                "child_activities": child["activities"], "snapshots_kept": snaps, "points_total": points})
            if replication:
                _check_replicas(catalog, LocalDriver(d / "cb", "cb"), nvms)
            else:
                await _check_sample(client, catalog, drv, ids)
    finally:
        for p in reversed(procs):
            p.stop()
        catalog.close()
        server.stop()
    shutil.rmtree(d, ignore_errors=True)
    return out


def _sample(catalog: Any, n: int) -> list[int]:
    return sorted(random.Random(len(catalog.list_restore_points(plan="scale"))).sample(range(n), min(SAMPLE, n)))


def _check_replicas(catalog: Any, cb: Any, nvms: int) -> None:
    """The newest replica point of a few VMs (its snapshot on the target) must hold the bytes written."""
    from models.plans import VMRef

    for i in _sample(catalog, nvms):
        point = catalog.list_restore_points(plan="scale", vm=VMRef(cluster="cb", vm=f"s{i:05d}-replica"))[-1]
        vm = cb.find_vm(f"s{i:05d}-replica")
        with cb.open_disk(vm.id, "disk0", catalog.point_snapshot(point.id)) as h:
            if h.read(0, TINY) != _bytes(i) + bytes(TINY // 2):
                raise BenchError(f"replica point {point.id} does not hold the bytes written to VM {i}")


def _replication_plan(name: str, vms: list[str]) -> Any:
    from bench.stack import _plan

    return _plan(name, vms)


async def _check_sample(client: Any, catalog: Any, drv: Any, ids: dict[int, str]) -> None:
    """Restore the newest point of a few VMs as new VMs; each must hold the bytes written."""
    from models.requests import RestoreMode, RestoreRequest

    for i in _sample(catalog, len(ids)):
        point = catalog.list_restore_points(plan="scale", vm=_ref(i))[-1]
        name = f"r{i:05d}-{point.id[-6:]}"
        await client.result(await client.restore(RestoreRequest(point_id=point.id, mode=RestoreMode.REBUILD,
                                                                new_name=name)))
        vm = drv.find_vm(name)
        got = drv.read(vm.id, "disk0", 0, TINY)
        if got != _bytes(i) + bytes(TINY // 2):
            raise BenchError(f"restore of {point.id} does not hold the bytes written to VM {i}")
        drv.delete_vm(vm.id)


def _ref(i: int) -> Any:
    from models.plans import VMRef

    return VMRef(cluster="ca", vm=f"s{i:05d}")


def bench_scale(work: Path, vms: int, parallel: int, kind: str = "backup") -> dict[str, Any]:
    out = asyncio.run(scale_bench(work, vms, parallel, kind))
    rows = [[r["run"], f"{r['wall_s']:.1f}", f"{r['per_vm_ms']:.0f}",
             *(f"{v:.3f}" for v in r["cpu_s_per_vm"].values()), max(r["plan_run_histories"]),
             len(r["plan_run_histories"]), r["children"], r["child_events"], r["child_activities"], r["snapshots_kept"],
             r["points_total"]] for r in out["runs"]]
    heads = ["run", "wall s", "ms/VM", *(f"CPU s/VM {k}" for k in out["runs"][0]["cpu_s_per_vm"]),
             "longest history", "runs in chain", "children", "child events", "child activities", "snapshots kept", "points"]
    print(f"\n{kind} plan run of {vms} VMs ({TINY >> 10} KiB each), {parallel} at a time\n" + table(heads, rows), flush=True)
    write_results(work, "scale" if kind == "backup" else f"scale-{kind}", out)
    return out
