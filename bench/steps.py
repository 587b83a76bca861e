"""One abdr benchmark step per process, so the parent can measure its wall time and peak RSS
(os.wait4). `python -m bench.steps STEP ARGS_JSON RESULT_FILE`; the step writes a JSON
result (with `work_s`: seconds from after the step's imports to its end, i.e. what a running
worker would spend) to RESULT_FILE.

The backup steps drive the repository the way activities/backup.py::transfer_backup does
(snapshot -> allocated or changed extents -> DiskWriter.run -> commit); the pull step calls
activities/replication.py::ReplicationActivities.pull_extents itself, in a Temporal
ActivityEnvironment, with a minimal catalog.

Imports are kept to what each step needs (temporalio only for `pull`)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

CHECKPOINT_S = 2.0  # as activities/backup.py


def _driver(a: dict[str, Any]) -> Any:
    from drivers.local import LocalDriver

    return LocalDriver(a["cluster_dir"])


def import_vm(a: dict[str, Any]) -> dict[str, Any]:
    from drivers.local.tools import import_image

    vm = import_image(_driver(a), a["image"], a["name"])
    return {"vm_id": vm.id}


def rewrite(a: dict[str, Any]) -> dict[str, Any]:
    from drivers.local.tools import rewrite_fraction

    ext = rewrite_fraction(_driver(a), a["vm_id"], a.get("disk", "disk0"), a["fraction"], a["seed"])
    return {"changed_bytes": sum(e.length for e in ext), "extents": len(ext)}


def create_vm(a: dict[str, Any]) -> dict[str, Any]:
    """An empty VM with the source VM's disks (what ensure_replica makes before a seed)."""
    from drivers.local import LocalDriver

    src = LocalDriver(a["source_cluster_dir"]).get_vm(a["source_vm_id"])
    vm = _driver(a).create_vm(src.config.model_copy(update={"name": a["name"]}))
    return {"vm_id": vm.id}


def snapshot(a: dict[str, Any]) -> dict[str, Any]:
    return {"snap_id": _driver(a).create_snapshot(a["vm_id"], a["name"]).id}


def init_repo(a: dict[str, Any]) -> dict[str, Any]:
    from drivers.repository import Repository

    repo = Repository.init(a["repo"])  # the defaults: what `abdr repository create` makes
    return {"chunk_size": repo.config.chunk_size, "compression_level": repo.config.compression_level,
            "sync": str(repo.config.sync)}


def _backup(a: dict[str, Any], incremental: bool) -> dict[str, Any]:
    """transfer_backup's path without Temporal: snapshot, extents, pipelined writer, commit."""
    from drivers.repository import Repository

    driver = _driver(a)
    repo = Repository.open(a["repo"])
    vm_id = a["vm_id"]
    t = time.perf_counter()
    snap = driver.create_snapshot(vm_id, a["snap_name"])
    snap_s = time.perf_counter() - t
    base_point = repo.get_point(a["base_point"]) if incremental else None
    session = repo.begin_backup(vm_id=vm_id, vm_config=snap.config, plan="bench",
                                base_point=base_point.id if base_point else None)
    stats = []
    extents_s = 0.0
    try:
        for disk in snap.config.disks:
            t = time.perf_counter()
            extents = ({"changed": driver.changed_extents(vm_id, disk.name, a["base_snap"], snap.id)} if incremental
                       else {"allocated": driver.allocated_extents(vm_id, disk.name, snap.id)})
            extents_s += time.perf_counter() - t
            with driver.open_disk(vm_id, disk.name, snap.id) as handle:
                writer = session.disk_writer(disk.name, disk.size_bytes, handle.read, source_id=snap.id,
                                             checkpoint_seconds=CHECKPOINT_S, **extents)
                dm = writer.run(lambda p: None)
            stats.append({"disk": disk.name, "size": disk.size_bytes,
                          "extent_bytes": sum(e.length for e in next(iter(extents.values()))),
                          **dm.stats.model_dump()})
        point = session.commit()
    finally:
        session.close()
    return {"snap_id": snap.id, "point_id": point.id, "snapshot_s": snap_s, "extents_s": extents_s, "disks": stats}


def full_backup(a: dict[str, Any]) -> dict[str, Any]:
    return _backup(a, incremental=False)


def incremental_backup(a: dict[str, Any]) -> dict[str, Any]:
    return _backup(a, incremental=True)


def restore(a: dict[str, Any]) -> dict[str, Any]:
    """A point's disk into a new raw file (sparse: zero chunks are skipped, as into a new
    disk), written as the local driver writes a restored disk: BatchedWrites' 8 MiB batches
    through a BulkWriter. Like `restic restore`, the file is not fsynced."""
    from drivers.base import BatchedWrites
    from drivers.fsio import BulkWriter
    from drivers.repository import Repository

    repo = Repository.open(a["repo"])
    point = repo.get_point(a["point_id"])
    dm = point.disk(a.get("disk", "disk0"))
    fd = os.open(a["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    bulk = BulkWriter(fd)
    try:
        os.ftruncate(fd, dm.size)
        batched = BatchedWrites(_FileTarget(bulk))
        p = repo.restore_disk(point.id, dm.name, batched.write, target_is_zero=True)
        batched.drain()
    finally:
        bulk.close()
        os.close(fd)
    return {"bytes_written": p.bytes_written, "chunks_written": p.chunks_written, "size": dm.size,
            "direct_bytes": bulk.direct_bytes}


class _FileTarget:
    """BatchedWrites' target (drivers.base.BatchTarget) on a plain file: not flushed, like
    restic's restore."""

    def __init__(self, bulk: Any) -> None:
        self.write_many = bulk.write_many

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------------------- replication
def _catalog(sites: dict[str, str], clusters: dict[str, list[str]]) -> Any:
    """A real catalog (SQLite, in a scratch directory) holding just the sites and clusters a
    step names: the reads pull_extents, Resources and the transfer slots make are the
    catalog's own, not a stand-in's that falls behind it."""
    import atexit
    import tempfile

    from drivers.catalog.store import Catalog
    from models.inventory import Cluster, Site

    d = tempfile.mkdtemp(prefix="abdr-bench-catalog-")
    atexit.register(shutil.rmtree, d, True)
    catalog = Catalog(f"sqlite:///{d}/catalog.db")
    for site in {*sites, *(site for site, _ in clusters.values())}:
        catalog.add_site(Site(name=site, transport_url=sites.get(site, "")))
    for name, (site, path) in clusters.items():
        catalog.add_cluster(Cluster(name=name, site=site, driver="local", endpoint=path))
    return catalog


def pull(a: dict[str, Any]) -> dict[str, Any]:
    """ReplicationActivities.pull_extents, called as the target site's worker would."""
    from temporalio.testing import ActivityEnvironment

    from activities.replication import ReplicationActivities
    from activities.resources import Resources
    from models.replication_jobs import PullInput

    catalog = _catalog(a["sites"], a["clusters"])
    acts = ReplicationActivities(Resources(catalog, a["local_site"]), a["token"])
    inp = PullInput.model_validate(a["input"])
    env = ActivityEnvironment()
    beats: list[Any] = []
    env.on_heartbeat = lambda *d: beats.append(d)
    t = time.perf_counter()
    res = env.run(acts.pull_extents, inp)
    return {"activity_s": time.perf_counter() - t, "heartbeats": len(beats), **res.model_dump()}


def serve(a: dict[str, Any]) -> None:
    """The source site's transport server (real uvicorn on loopback) until SIGTERM; writes
    its URL to the result file once it listens."""
    import signal
    import threading

    from activities.resources import Resources
    from drivers.transport.server import TransportServer, make_app

    catalog = _catalog({}, a["clusters"])
    res = Resources(catalog, a["site"])
    server = TransportServer(make_app(res.driver, a["token"], a["site"]), "127.0.0.1", 0).start()
    port = server.server.servers[0].sockets[0].getsockname()[1]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tmp = Path(a["url_file"] + ".tmp")  # renamed into place: the bench never reads it half-written
    tmp.write_text(f"http://127.0.0.1:{port}")
    tmp.rename(a["url_file"])
    parent = os.getppid()
    while not stop.wait(0.5):
        if os.getppid() != parent:  # the bench died without stopping us
            break
    server.stop()


# Modules a step needs, imported before its clock starts (a worker has them loaded already).
PRELOAD = {
    "import_vm": ["drivers.local", "drivers.local.tools"],
    "rewrite": ["drivers.local", "drivers.local.tools"],
    "snapshot": ["drivers.local"],
    "create_vm": ["drivers.local"],
    "init_repo": ["drivers.repository"],
    "full_backup": ["drivers.local", "drivers.repository"],
    "incremental_backup": ["drivers.local", "drivers.repository"],
    "restore": ["drivers.base", "drivers.fsio", "drivers.repository"],
    "pull": ["temporalio.testing", "activities.replication", "activities.resources", "models.replication_jobs",
             "drivers.local"],
}

STEPS = {f.__name__: f for f in (import_vm, rewrite, create_vm, snapshot, init_repo, full_backup,
                                 incremental_backup, restore, pull)}


def main(argv: list[str]) -> None:
    step, args = argv[0], json.loads(argv[1])
    if step == "serve":
        serve(args)
        return
    import importlib

    for mod in PRELOAD[step]:
        importlib.import_module(mod)
    t = time.perf_counter()
    result = STEPS[step](args)
    result["work_s"] = time.perf_counter() - t
    Path(argv[2]).write_text(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
