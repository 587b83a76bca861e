"""End-to-end fixtures: the session's real dev server, an in-process abdr worker (workflows
+ catalog + site "default") over a throwaway catalog, a local cluster and a repository."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from drivers import DRIVERS
from drivers.base import ClusterDriver
from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from models.inventory import DiskSpec, Site, VMConfig
from models.services import RepositorySpec
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from tests.e2e.histories import quiesce
from tests.e2e.oracle import read_disk
from worker import build_workers

MiB = 1 << 20
ABDR = str(Path(sys.executable).parent / "abdr")


async def cli_output(env: dict[str, str], *args: str, columns: int = 250) -> tuple[int, str]:
    """The real `abdr` CLI with `env` (ABDR_* settings) added, as a user runs it, its output
    piped (not a terminal): (exit code, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(ABDR, *args, env={**os.environ, **env, "COLUMNS": str(columns)},
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def run_cli(env: dict[str, str], *args: str) -> str:
    """`cli_output`'s output; the command must succeed."""
    code, out = await cli_output(env, *args)
    assert code == 0, out
    return out


D = TypeVar("D", bound=ClusterDriver)


@dataclass
class Stack(Generic[D]):
    client: AbdrClient
    catalog: Catalog
    driver: D
    settings: Settings
    tmp: Path
    repo_path: Path

    def make_vm(self, name: str, disks: int = 1, size: int = 8 * MiB, seed: int = 0) -> str:
        """A VM whose disks hold deterministic data with holes (some blocks never written)."""
        cfg = VMConfig(name=name, disks=[DiskSpec(name=f"disk{i}", size_bytes=size, boot=i == 0) for i in range(disks)])
        vm = self.driver.create_vm(cfg)
        for i in range(disks):
            with self.driver.open_disk(vm.id, f"disk{i}", writable=True) as h:
                for block in range(0, size, 256 << 10):
                    if (block // (256 << 10) + seed) % 3:  # two thirds written, one third left as holes
                        h.write(block, hashlib.shake_256(f"{name}/{i}/{block}/{seed}".encode()).digest(256 << 10))
        return vm.id

    def disk_bytes(self, vm_name: str, disk: str = "disk0", snap_id: str | None = None) -> bytes:
        return read_disk(self.driver, vm_name, disk, snap_id)

    def cli_env(self) -> dict[str, str]:
        return {"ABDR_TEMPORAL_ADDRESS": self.settings.temporal_address, "ABDR_DATA_DIR": str(self.tmp / "cli")}

    async def run_cli(self, *args: str, columns: int = 250) -> tuple[int, str]:
        """The real `abdr` CLI against this stack, as a user runs it, its output piped (not a
        terminal): (exit code, stdout + stderr)."""
        return await cli_output(self.cli_env(), *args, columns=columns)

    async def cli(self, *args: str, columns: int = 250) -> str:
        """`run_cli`'s output; the command must succeed."""
        code, out = await self.run_cli(*args, columns=columns)
        assert code == 0, out
        return out

    async def cli_json(self, *args: str) -> Any:
        return json.loads(await self.cli(*args, "--json"))


@asynccontextmanager
async def running_stack(temporal_env: WorkflowEnvironment, tmp_path: Path, driver: str = "local",
                        endpoint: str | None = None) -> AsyncIterator[Stack[Any]]:
    """The dev server's client, an in-process worker over a fresh catalog, cluster c1 (a local
    directory unless `driver`/`endpoint` say otherwise) and repository r1."""
    await quiesce(temporal_env.client)
    settings = Settings(data_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'catalog.db'}",
                        temporal_address=temporal_env.client.service_client.config.target_host, site="default",
                        shutdown_grace_s=1)
    catalog = Catalog(settings.catalog_url)
    catalog.add_site(Site(name="default"))
    # A connection of the stack's own, named after its test: a history then says which
    # stack's worker ran each activity (every stack of a test process shares its dev server).
    temporal = await Client.connect(settings.temporal_address, data_converter=pydantic_data_converter,
                                    identity=f"stack:{tmp_path.name}@{os.getpid()}")
    client = AbdrClient(temporal, settings)
    async with AsyncExitStack() as stack:
        executor = stack.enter_context(ThreadPoolExecutor(16))
        for w in build_workers(temporal, settings, catalog, site="default", run_workflows=True,
                               executor=executor):
            await stack.enter_async_context(w)
        endpoint = endpoint or str(tmp_path / "clusters" / "c1")
        await client.add_cluster("c1", "default", driver, endpoint)
        repo_path = tmp_path / "repo"
        await client.create_repository(RepositorySpec(name="r1", path=str(repo_path), site="default"))
        yield Stack(client, catalog, DRIVERS[driver].open(endpoint, "c1"), settings, tmp_path, repo_path)
        await quiesce(temporal_env.client)
    catalog.close()


@pytest.fixture
async def stack(temporal_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack[LocalDriver]]:
    async with running_stack(temporal_env, tmp_path) as s:
        yield s


@pytest.fixture
def transport(stack: Stack) -> Iterator[None]:
    """The stack's site serving its snapshot reads, as a worker process does: replication
    moves data over it (the in-process stack does not serve it by itself)."""
    from worker import start_transport

    server = start_transport(stack.settings, stack.catalog, "default")
    try:
        yield
    finally:
        server.stop()
