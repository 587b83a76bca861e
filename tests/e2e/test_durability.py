"""Crashes in the middle: a worker SIGKILLed mid-transfer, the Temporal server stopped and
started again mid-run. The work finishes, resumes instead of starting over, and every
result is byte-exact."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode

from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from models.inventory import DiskSpec, Site, VMConfig
from models.jobs import TransferProgress
from models.plans import BackupPlanSpec, RunResult
from models.requests import RestoreMode, RestoreRequest
from models.services import BackupService, RepositorySpec
from starter.client import AbdrClient
from starter.settings import Settings
from tests.e2e.processes import DevServer, WorkerProcess, free_port

MiB = 1 << 20


@dataclass
class World:
    server: DevServer
    env: dict[str, str]
    tmp: Path
    catalog: Catalog
    driver: LocalDriver
    workers: list[WorkerProcess]

    def worker(self) -> WorkerProcess:
        w = WorkerProcess(self.env, self.tmp / f"worker{len(self.workers)}.log")
        self.workers.append(w)
        return w

    async def client(self) -> AbdrClient:
        settings = Settings(temporal_address=self.server.address, data_dir=self.tmp / "state",
                            database_url=self.env["ABDR_DATABASE_URL"])
        for _ in range(100):
            try:
                c = await Client.connect(self.server.address, data_converter=pydantic_data_converter)
                return AbdrClient(c, settings)
            except RuntimeError:
                await asyncio.sleep(0.2)
        raise AssertionError("cannot connect to the dev server")

    def make_vm(self, name: str, size: int) -> bytes:
        vm = self.driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=size)]))
        with self.driver.open_disk(vm.id, "disk0", writable=True) as h:
            for off in range(0, size, MiB):
                h.write(off, hashlib.shake_256(f"{name}/{off}".encode()).digest(MiB))
            return h.read(0, size)

    def disk(self, name: str) -> bytes:
        vm = self.driver.find_vm(name)
        assert vm is not None
        with self.driver.open_disk(vm.id, "disk0") as h:
            return h.read(0, h.size)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = DevServer(tmp_path / "temporal.db").start()
    env = {"ABDR_TEMPORAL_ADDRESS": server.address, "ABDR_DATA_DIR": str(tmp_path / "state"),
           "ABDR_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}", "ABDR_SITE": "default",
           "ABDR_SHUTDOWN_GRACE_S": "1"}
    catalog = Catalog(env["ABDR_DATABASE_URL"])
    catalog.add_site(Site(name="default"))
    w = World(server, env, tmp_path, catalog, LocalDriver(tmp_path / "clusters" / "c1", "c1"), [])
    try:
        yield w
    finally:
        for p in w.workers:
            p.stop()
        server.stop()
        catalog.close()


async def setup_plan(world: World, client: AbdrClient, vms: list[str], read_iops: int) -> None:
    await client.add_cluster("c1", "default", "local", str(world.tmp / "clusters" / "c1"))
    await client.create_repository(RepositorySpec(name="r1", path=str(world.tmp / "repo"), site="default"))
    world.catalog.put_service(BackupService(name="default", site="default", backup_read_iops=read_iops))
    await client.create_backup_plan(BackupPlanSpec.model_validate({
        "name": "p", "vms": [{"cluster": "c1", "vm": v} for v in vms], "repository": "r1",
        "schedule": {"kind": "DAILY", "times": ["03:00"]}, "retention": {"kind": "FOREVER"}}))


async def transfer_progress(client: AbdrClient, workflow_id: str) -> TransferProgress | None:
    """The heartbeat details of the VM backup's running transfer, if any."""
    try:
        desc = await client.client.get_workflow_handle(workflow_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:  # not started yet
            return None
        raise
    for pending in desc.raw_description.pending_activities:
        if pending.activity_type.name == "transfer_backup" and pending.heartbeat_details.payloads:
            [details] = await client.client.data_converter.decode(pending.heartbeat_details.payloads)
            return TransferProgress.model_validate(details)
    return None


async def wait_progress(client: AbdrClient, workflow_id: str, at_least: int) -> TransferProgress:
    for _ in range(600):
        p = await transfer_progress(client, workflow_id)
        if p is not None and p.bytes_done >= at_least:
            return p
        await asyncio.sleep(0.1)
    raise AssertionError("the transfer made no progress")


async def test_worker_killed_mid_transfer_resumes_and_restores_exactly(world: World) -> None:
    first = world.worker()
    client = await world.client()
    size = 48 * MiB
    data = world.make_vm("vm1", size)
    await setup_plan(world, client, ["vm1"], read_iops=48)  # 3 MiB/s: ~16 s of transfer
    run = await client.run_backup_plan("p")
    seen = await wait_progress(client, "backup/p/c1/vm1", at_least=4 * MiB)
    first.kill()  # SIGKILL: no graceful anything
    world.worker()
    result = await client.plan_run_result(run)
    assert result.result == RunResult.SUCCESS, result
    [disk] = result.vms[0].disks
    # The new worker resumed from the durable progress the dead one had confirmed.
    assert disk.resumed_chunks >= seen.chunk_index > 0
    h = await client.restore(RestoreRequest(point_id=result.vms[0].point_id, mode=RestoreMode.REBUILD,
                                            new_name="vm1-restored"))
    await client.restore_result(h)
    assert world.disk("vm1-restored") == data


async def test_temporal_restart_mid_plan_run_and_mid_restore(world: World) -> None:
    metrics_port = free_port()
    world.env["ABDR_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
    world.worker()
    client = await world.client()
    data = {name: world.make_vm(name, 24 * MiB) for name in ("a", "b")}
    await setup_plan(world, client, ["a", "b"], read_iops=48)  # ~8 s of transfer per VM
    run = await client.run_backup_plan("p")
    await wait_progress(client, "backup/p/c1/a", at_least=0)  # the transfer is under way
    world.server.stop()  # the whole control plane goes away mid-transfer...
    await asyncio.sleep(2)
    world.server.start()  # ...and comes back on the same state
    client = await world.client()
    result = await client.plan_run_result(client.client.get_workflow_handle(run.id))
    assert result["result"] == "SUCCESS", result
    points = {p["vm"]: p["id"] for p in await client.list_restore_points(plan="p")}
    assert set(points) == {"a", "b"}

    world.catalog.put_service(BackupService(name="default", site="default", restore_write_iops=48))
    h = await client.restore(RestoreRequest(point_id=points["a"], mode=RestoreMode.REBUILD, new_name="a2"))
    await asyncio.sleep(2)
    world.server.stop()
    await asyncio.sleep(2)
    world.server.start()
    client = await world.client()
    restored = await client.client.get_workflow_handle(h.id).result()
    assert restored["vm"]["vm"] == "a2"
    assert world.disk("a2") == data["a"]
    assert world.disk("a") == data["a"] and world.disk("b") == data["b"]
    # The worker exports Temporal's metrics and abdr's own for Prometheus.
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    read = [line for line in metrics.splitlines() if line.startswith("abdr_backup_read_bytes")]
    assert read and float(read[0].rsplit(" ", 1)[1]) >= 2 * 24 * MiB
    assert "temporal_activity_execution_latency" in metrics
