"""A stack a test can crash: a Temporal dev server on a file (it survives its own SIGKILL)
and abdr worker processes started by role, each one SIGKILLable, over one local cluster
"c1" in site "default". The durability tests of backups and restores share it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from models.inventory import DiskSpec, Site, VMConfig
from models.plans import BackupPlanSpec
from models.services import RepositorySpec
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from tests.e2e.processes import DevServer, WorkerProcess
from tests.quiet import quiet_time

MiB = 1 << 20
# worker.py's flags per role: both roles, only site default's activities, or only the
# workflows with the catalog's activities.
ROLES = {"both": (), "site": ("--no-workflows",), "orchestration": ("--no-site",)}


@dataclass
class KillableStack:
    server: DevServer
    env: dict[str, str]
    tmp: Path
    catalog: Catalog
    driver: LocalDriver
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(self, role: str = "both") -> WorkerProcess:
        w = WorkerProcess(self.env, self.tmp / f"{role}{len(self.workers)}.log", *ROLES[role])
        self.workers.append(w)
        return w

    async def client(self) -> AbdrClient:
        settings = Settings(temporal_address=self.server.address, data_dir=self.tmp / "state",
                            database_url=self.env["ABDR_DATABASE_URL"])
        for _ in range(100):  # the server may be starting again after a kill
            try:
                c = await Client.connect(self.server.address, data_converter=pydantic_data_converter)
                return AbdrClient(c, settings)
            except RuntimeError:
                await asyncio.sleep(0.2)
        raise AssertionError("cannot connect to the dev server")

    def make_vm(self, name: str, size: int) -> bytes:
        """A VM with one disk of distinct data per MiB; returns the bytes (the oracle)."""
        vm = self.driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=size)]))
        with self.driver.open_disk(vm.id, "disk0", writable=True) as h:
            for off in range(0, size, MiB):
                h.write(off, hashlib.shake_256(f"{name}/{off}".encode()).digest(MiB))
            return h.read(0, size)

    def disk(self, name: str) -> bytes:
        vm = self.driver.find_vm(name)
        assert vm is not None, name
        with self.driver.open_disk(vm.id, "disk0") as h:
            return h.read(0, h.size)

    async def backup_plan(self, client: AbdrClient, vms: list[str]) -> None:
        """Cluster c1, repository r1 and backup plan "p" over `vms` (daily, kept forever)."""
        await client.add_cluster("c1", "default", "local", str(self.tmp / "clusters" / "c1"))
        await client.create_repository(RepositorySpec(name="r1", path=str(self.tmp / "repo"), site="default"))
        await client.create_backup_plan(BackupPlanSpec.model_validate({
            "name": "p", "vms": [{"cluster": "c1", "vm": v} for v in vms], "repository": "r1",
            "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "FOREVER"}}))

    def logs(self) -> str:
        return "\n".join(f"{w.log.name}: {w.log.read_text()[-1500:]}" for w in self.workers)


@contextmanager
def killable_stack(tmp: Path) -> Iterator[KillableStack]:
    server = DevServer(tmp / "temporal.db").start()
    env = {"ABDR_TEMPORAL_ADDRESS": server.address, "ABDR_DATA_DIR": str(tmp / "state"),
           "ABDR_DATABASE_URL": f"sqlite:///{tmp / 'catalog.db'}", "ABDR_SITE": "default",
           "ABDR_SHUTDOWN_GRACE_S": "1"}
    catalog = Catalog(env["ABDR_DATABASE_URL"])
    catalog.add_site(Site(name="default"))
    stack = KillableStack(server, env, tmp, catalog, LocalDriver(tmp / "clusters" / "c1", "c1"))
    try:
        yield stack
    finally:
        for w in stack.workers:
            w.stop()
        server.stop()
        catalog.close()
