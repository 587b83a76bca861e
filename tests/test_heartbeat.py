"""Progress by elapsed time, and only durable progress (activities/heartbeat.py).

Slow, not big: activities run on a real worker (the session's dev server) with a heartbeat
timeout a few seconds long, throttled (an IOPS or bandwidth cap) or silent for several
times that timeout, and must still succeed; the details they heartbeat are checked against
what has really been flushed to the target disk."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities import heartbeat
from activities.heartbeat import HeartbeatInterceptor, Progress
from activities.replication import ReplicationActivities
from activities.resources import Resources
from activities.restore import RestoreActivities
from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from drivers.repository import Repository
from drivers.transport.protocol import MAX_READ_BYTES
from drivers.transport.server import TransportServer, make_app
from models.inventory import Cluster, DiskSpec, Site, VMConfig
from models.jobs import (
    ResolvedRestore,
    RestoreDisksInput,
    RestoreDisksResult,
    TransferProgress,
)
from models.plans import VMRef
from models.replication_jobs import PullInput, PullProgress, PullResult, VMAt
from tests.ports import free_port

MiB = 1 << 20
TOKEN = "heartbeat-test-token"


@workflow.defn(name="TestRunOneActivity")
class RunOne:
    """Runs one activity by name with the given heartbeat timeout and attempts."""

    @workflow.run
    async def run(self, call: dict[str, Any]) -> Any:
        return await workflow.execute_activity(
            call["activity"], call["arg"], task_queue=call["queue"], start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=timedelta(seconds=call["heartbeat_s"]),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=call["attempts"]))


@activity.defn(name="test_reports_fails_then_sleeps_silently")
def reports_fails_then_sleeps(seconds: float) -> list[Any]:
    """On purpose: attempt 1 reports progress from a helper thread and fails; attempt 2
    never heartbeats itself for `seconds`, and returns the details it resumed from."""
    info = activity.info()
    if info.attempt == 1:
        progress = Progress()
        t = threading.Thread(target=progress.report, args=({"confirmed": 7},))
        t.start()
        t.join()
        time.sleep(3)  # the ticker sends it
        raise RuntimeError("failing on purpose after reporting progress")
    time.sleep(seconds)
    return list(info.heartbeat_details)


@dataclass
class Bench:
    client: Client
    queue: str
    catalog: Catalog
    res: Resources
    tmp: Path

    async def run(self, name: str, arg: Any, heartbeat_s: float, attempts: int = 1) -> Any:
        return await self.client.execute_workflow(
            RunOne.run, {"activity": name, "arg": arg, "queue": self.queue, "heartbeat_s": heartbeat_s,
                         "attempts": attempts},
            id=f"test-heartbeat-{uuid.uuid4().hex[:8]}", task_queue=self.queue)


@pytest.fixture
async def bench(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Bench]:
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.add_site(Site(name="default"))
    for name in ("a", "b"):
        catalog.add_cluster(Cluster(name=name, site="default", driver="local", endpoint=str(tmp_path / name)))
    res = Resources(catalog, "default")
    queue = f"test-heartbeat-{uuid.uuid4().hex[:8]}"
    rep, restore = ReplicationActivities(res, TOKEN), RestoreActivities(res)
    with ThreadPoolExecutor(8) as executor:
        async with Worker(temporal_env.client, task_queue=queue, workflows=[RunOne],
                          activities=[reports_fails_then_sleeps, restore.restore_disks, rep.pull_extents],
                          activity_executor=executor, interceptors=[HeartbeatInterceptor()],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            yield Bench(temporal_env.client, queue, catalog, res, tmp_path)
    catalog.close()


def fill(driver: LocalDriver, name: str, size: int, holes: bool = True) -> tuple[str, bytes]:
    """A VM whose disk holds incompressible data (every third MiB a hole); returns its bytes."""
    vm = driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=size)]))
    with driver.open_disk(vm.id, "disk0", writable=True) as h:
        for off in range(0, size, MiB):
            if not holes or (off // MiB) % 3:
                h.write(off, hashlib.shake_256(f"{name}/{off}".encode()).digest(min(MiB, size - off)))
        return vm.id, h.read(0, size)


def read_disk(driver: LocalDriver, vm_id: str) -> bytes:
    with driver.open_disk(vm_id, "disk0") as h:
        return h.read(0, h.size)


def backed_up(res: Resources, tmp: Path, size: int) -> tuple[ResolvedRestore, bytes]:
    """A point of VM `src` in a new repository, and the bytes the VM had when it was taken."""
    driver = res.driver("a")
    vm_id, data = fill(driver, "src", size)
    repo = Repository.init(tmp / "repo", chunk_size=MiB)
    config = driver.get_vm(vm_id).config
    session = repo.begin_backup(vm_id=vm_id, vm_config=config)
    with driver.open_disk(vm_id, "disk0") as h:
        session.backup_disk("disk0", size, h.read)
    point = session.commit()
    session.close()
    target = config.model_copy(update={"name": "restored"})
    return ResolvedRestore(point_id=point.id, repository_path=str(tmp / "repo"), source=VMRef(cluster="a", vm="src"),
                           target=VMRef(cluster="a", vm="restored"), site="default", config=target), data


# ------------------------------------------------------------------ by elapsed time
async def test_a_silent_activity_keeps_beating_and_keeps_its_resume_point(bench: Bench) -> None:
    """Attempt 2 is silent for 4x its heartbeat timeout: the ticker keeps it alive, and every
    tick carries the details attempt 1 reported (never empty ones that would wipe them)."""
    handle = await bench.client.start_workflow(
        RunOne.run, {"activity": "test_reports_fails_then_sleeps_silently", "arg": 12.0, "queue": bench.queue,
                     "heartbeat_s": 3, "attempts": 2},
        id=f"test-heartbeat-{uuid.uuid4().hex[:8]}", task_queue=bench.queue)
    seen: list[Any] = []  # what attempt 2's own heartbeats carried
    while len(seen) < 15:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            break
        for p in desc.raw_description.pending_activities:
            if p.attempt == 2 and p.last_heartbeat_time.ToDatetime() > p.last_started_time.ToDatetime():
                payloads = p.heartbeat_details.payloads
                seen.append((await bench.client.data_converter.decode(payloads))[0] if payloads else None)
        await asyncio.sleep(0.3)
    assert await handle.result() == [{"confirmed": 7}]
    assert seen and all(s == {"confirmed": 7} for s in seen), seen


async def test_a_restore_throttled_far_below_its_heartbeat_timeout_succeeds(bench: Bench) -> None:
    """~8 MiB at 10 IOPS of 64 KiB: about 13 s of writing against a 4 s heartbeat timeout
    (the old code heartbeat once per 256 MiB: only at the start and the end)."""
    resolved, data = backed_up(bench.res, bench.tmp, 12 * MiB)
    resolved = resolved.model_copy(update={"write_iops": 10})
    driver = bench.res.driver("a")
    vm = driver.create_vm(resolved.config)
    out = RestoreDisksResult.model_validate(await bench.run(
        "restore_disks", RestoreDisksInput(restore=resolved, vm_id=vm.id, new_vm=True).model_dump(mode="json"), 4))
    assert out.total_bytes == len(data) and out.written_bytes >= 8 * MiB
    assert read_disk(driver, vm.id) == data


@pytest.fixture
def remote(bench: Bench) -> Iterator[tuple[LocalDriver, str, str, bytes]]:
    """Site "src"'s transport serving cluster "a"; returns (driver, vm id, snapshot id, its bytes)."""
    src = LocalDriver(bench.tmp / "src-cluster", "a")
    port = free_port()
    server = TransportServer(make_app(lambda name: src, TOKEN, "src"), "127.0.0.1", port).start()
    bench.catalog.add_site(Site(name="src"))
    bench.catalog.set_site_transport("src", f"http://127.0.0.1:{port}")
    try:
        yield src, *snapshotted(src, "vm", 2 * MiB)
    finally:
        server.stop()


def snapshotted(src: LocalDriver, name: str, size: int) -> tuple[str, str, bytes]:
    vm_id, data = fill(src, name, size, holes=False)
    return vm_id, src.create_snapshot(vm_id, "s1").id, data


async def test_a_pull_throttled_far_below_its_heartbeat_timeout_succeeds(
        bench: Bench, remote: tuple[LocalDriver, str, str, bytes]) -> None:
    """2 MiB of incompressible data at 1 Mbit/s: one read takes ~17 s against a 4 s
    heartbeat timeout (the old code heartbeat once per 8 MiB batch)."""
    _, vm_id, snap, data = remote
    local = bench.res.driver("b")
    replica = local.create_vm(VMConfig(name="replica", disks=[DiskSpec(name="disk0", size_bytes=len(data))]))
    inp = PullInput(remote_site="src", remote=VMAt(cluster="a", vm_id=vm_id, snapshot_id=snap),
                    local=VMAt(cluster="b", vm_id=replica.id), bandwidth_mbps=1)
    out = PullResult.model_validate(await bench.run("pull_extents", inp.model_dump(mode="json"), 4))
    assert out.moved_bytes == len(data)
    assert read_disk(local, replica.id) == data


# ------------------------------------------------------------------ only durable progress
class FlushSpy:
    """A real disk handle that remembers its writes not flushed yet: what a power cut may
    lose (the driver contract); a SIGKILL cannot show it, the page cache survives."""

    def __init__(self, handle: Any) -> None:
        self.handle, self.size = handle, handle.size
        self.unflushed: list[tuple[int, int]] = []
        self.batches = self.flushed_batches = 0

    def write(self, offset: int, data: Any) -> None:
        self.write_many([(offset, data)])

    def write_many(self, writes: Iterable[tuple[int, Any]]) -> None:
        writes = list(writes)
        self.handle.write_many(writes)
        self.unflushed += [(off, len(d)) for off, d in writes]
        self.batches += 1

    def flush(self) -> None:
        self.handle.flush()
        self.unflushed.clear()
        self.flushed_batches = self.batches

    def read(self, offset: int, length: int) -> bytes:
        return self.handle.read(offset, length)

    def close(self) -> None:
        self.handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpyResources(Resources):
    """Resources whose writable disks are FlushSpies (kept per disk, in opening order)."""

    def __init__(self, base: Resources) -> None:
        super().__init__(base.catalog, base.site)
        self.spies: list[FlushSpy] = []

    def driver(self, cluster: str) -> Any:
        real, spies = super().driver(cluster), self.spies

        class Spied:
            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

            def open_disk(self, vm_id: str, disk: str, snap_id: str | None = None, writable: bool = False) -> Any:
                h = real.open_disk(vm_id, disk, snap_id, writable)
                if not writable:
                    return h
                spies.append(FlushSpy(h))
                return spies[-1]

        return Spied()


@pytest.fixture
def every_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoint at every unit of work (the default is every 2 s), so many are checked."""
    monkeypatch.setattr(heartbeat, "CHECKPOINT_S", 0.0)


def test_restore_reports_only_flushed_progress(bench: Bench, every_unit: None) -> None:
    resolved, data = backed_up(bench.res, bench.tmp, 12 * MiB)
    res = SpyResources(bench.res)
    vm = res.driver("a").create_vm(resolved.config)
    reported: list[TransferProgress] = []

    def on_heartbeat(details: dict) -> None:
        p = TransferProgress.model_validate(details)
        spy = res.spies[-1]
        # Every chunk before the resume point is on stable storage.
        assert all(off >= p.chunk_index * MiB for off, _ in spy.unflushed), (p, spy.unflushed)
        reported.append(p)

    env = ActivityEnvironment()
    env.on_heartbeat = on_heartbeat
    env.run(RestoreActivities(res).restore_disks, RestoreDisksInput(restore=resolved, vm_id=vm.id, new_vm=True))
    assert len({p.chunk_index for p in reported}) >= 6 and reported[-1].chunk_index == 12
    assert read_disk(res.driver("a"), vm.id) == data


def test_pull_reports_only_flushed_progress(bench: Bench, every_unit: None,
                                            remote: tuple[LocalDriver, str, str, bytes]) -> None:
    src, _, _, _ = remote
    vm_id, snap, data = snapshotted(src, "vm2", 3 * MAX_READ_BYTES + MiB)  # four read batches
    res = SpyResources(bench.res)
    replica = res.driver("b").create_vm(VMConfig(name="r2", disks=[DiskSpec(name="disk0", size_bytes=len(data))]))
    reported: list[PullProgress] = []

    def on_heartbeat(details: dict) -> None:
        p = PullProgress.model_validate(details)
        if p.disk_index == 0:  # batches before batch_index were written: all of them flushed
            assert res.spies[-1].flushed_batches >= p.batch_index, (p, res.spies[-1].batches)
        else:
            assert not res.spies[-1].unflushed
        reported.append(p)

    env = ActivityEnvironment()
    env.on_heartbeat = on_heartbeat
    env.run(ReplicationActivities(res, TOKEN).pull_extents,
            PullInput(remote_site="src", remote=VMAt(cluster="a", vm_id=vm_id, snapshot_id=snap),
                      local=VMAt(cluster="b", vm_id=replica.id)))
    assert [p.batch_index for p in reported if p.disk_index == 0] == [1, 2, 3, 4]
    assert read_disk(res.driver("b"), replica.id) == data
