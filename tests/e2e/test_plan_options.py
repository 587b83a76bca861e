"""Plan options do what they say, observed from outside abdr: the chunk files a backup
wrote (their on-disk header says whether zstd was used), the bytes on the transport, the
space a replica's disks take. Every run is checked byte for byte against its source."""

from __future__ import annotations

import asyncio
import os
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drivers.local import LocalDriver
from models.inventory import DiskSpec, VMConfig
from models.plans import BackupPlanSpec, RunResult
from models.replication_jobs import ReplicationRunResult
from models.requests import RestoreMode, RestoreRequest
from models.services import ReplicationService, RepositorySpec
from tests.e2e.conftest import MiB, Stack
from tests.e2e.oracle import read_disk
from tests.e2e.test_plans import trigger_and_wait
from tests.e2e.test_replication import DR, dr, plan, server  # noqa: F401 (fixtures)
from tests.quiet import quiet_time

ABDR = str(Path(sys.executable).parent / "abdr")
CHUNK_HEADER = struct.Struct("<4sBBHII")  # magic, version, flags, reserved, raw_len, payload_len (docs/repository-format.md)
FLAG_ZSTD = 1


def abdr(dr: DR, *argv: str) -> str:  # noqa: F811
    """The real `abdr` CLI against the test's stack; its output."""
    done = subprocess.run([ABDR, *argv], env={**os.environ, **dr.env}, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def compressible_vm(driver: LocalDriver, name: str, size: int = 8 * MiB) -> bytes:
    """A VM whose disk holds text-like data (compresses well), distinct per VM; one MiB in
    four is never written (a hole)."""
    vm = driver.create_vm(VMConfig(name=name, disks=[DiskSpec(name="disk0", size_bytes=size)]))
    with driver.open_disk(vm.id, "disk0", writable=True) as h:
        for off in range(0, size, MiB):
            if (off // MiB) % 4 != 3:
                line = f"{name} block {off:#x}: the quick brown fox jumps over the lazy dog\n".encode()
                h.write(off, (line * (MiB // len(line) + 1))[:MiB])
    return read_disk(driver, name)


def allocated_bytes(driver: LocalDriver, root: Path, vm_name: str, disk: str = "disk0") -> int:
    """The space the disk's live file takes on the host's filesystem (st_blocks), read at
    the path the local cluster layout gives it (<root>/vms/<vm-id>/disks/<disk>.raw)."""
    vm = driver.find_vm(vm_name)
    assert vm is not None, vm_name
    return os.stat(root / "vms" / vm.id / "disks" / f"{disk}.raw").st_blocks * 512


def chunk_files(repo: Path) -> list[tuple[int, int, int]]:
    """(flags, raw_len, file size) of every chunk file in a repository, read from disk."""
    out = []
    for p in (repo / "chunks").rglob("*"):
        if p.is_file() and len(p.name) == 64:
            with open(p, "rb") as f:
                magic, _, flags, _, raw_len, _ = CHUNK_HEADER.unpack(f.read(CHUNK_HEADER.size))
            assert magic == b"ABDC", p
            out.append((flags, raw_len, p.stat().st_size))
    return out


async def test_backup_compression_is_per_plan(stack: Stack) -> None:
    data = {}
    for on in (True, False):
        tag = "on" if on else "off"
        repo = stack.tmp / f"repo-{tag}"
        await stack.client.create_repository(RepositorySpec(name=f"r-{tag}", path=str(repo), site="default"))
        data[tag] = compressible_vm(stack.driver, f"vm-{tag}")
        await stack.client.create_backup_plan(BackupPlanSpec.model_validate({
            "name": f"p-{tag}", "vms": [{"cluster": "c1", "vm": f"vm-{tag}"}], "repository": f"r-{tag}",
            "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "FOREVER"}, "compression": on}))
        result = await stack.client.plan_run_result(await stack.client.run_backup_plan(f"p-{tag}"))
        assert result.result == RunResult.SUCCESS, result
        chunks = chunk_files(repo)
        assert chunks, f"no chunk stored by plan p-{tag}"
        raw = sum(r for _, r, _ in chunks)
        stored = sum(s for _, _, s in chunks)
        if on:
            assert all(f & FLAG_ZSTD for f, _, _ in chunks) and stored < raw // 4, (stored, raw)
        else:
            assert not any(f & FLAG_ZSTD for f, _, _ in chunks) and stored >= raw, (stored, raw)
        restored = await stack.client.restore_result(await stack.client.restore(RestoreRequest(
            point_id=result.vms[0].point_id, mode=RestoreMode.REBUILD, new_name=f"vm-{tag}-r")))
        assert restored.vm.vm == f"vm-{tag}-r"
        assert read_disk(stack.driver, f"vm-{tag}-r") == data[tag], f"restore of plan p-{tag} differs"


async def test_replication_compression_and_thin_provisioning_are_per_plan(dr: DR) -> None:  # noqa: F811
    """Plan 'thick' (compression off, thin_provisioning off) and plan 'thin' (the defaults)
    replicate compressible VMs with holes: the wire carries raw bytes for one and zstd for
    the other, and the thick replica's disk reserves its whole size while the thin one
    takes about what was written."""
    client, size = dr.client, 16 * MiB
    assert client is not None
    oracle = {name: compressible_vm(dr.a, f"vm-{name}", size) for name in ("thick", "thin")}
    # The thick plan through the CLI (its options), the thin one with the defaults through the client.
    abdr(dr, "replication-plan", "create", "thick", "--source-site", "a", "--target-site", "b", "--target-cluster", "cb",
         "--vm", "ca/vm-thick", "--schedule", "every 15m", "--retention", "count:5", "--no-compression", "--thick")
    await client.create_replication_plan(plan("thin", vms=[{"cluster": "ca", "vm": "vm-thin"}]))
    handles = await asyncio.gather(*(client.run_replication_plan(n) for n in oracle))
    results = await asyncio.gather(*(client.result(h) for h in handles))
    by = {r.plan: r for r in results}
    assert all(r.result == RunResult.SUCCESS for r in results), results
    written = size * 3 // 4
    [thick], [thin] = by["thick"].vms, by["thin"].vms
    assert thick.moved_bytes == thin.moved_bytes == written
    assert thick.wire_bytes == written  # raw on the wire
    assert thin.wire_bytes < written // 4  # zstd on the wire
    assert allocated_bytes(dr.b, dr.tmp / "cb", "vm-thick-replica") >= size
    assert allocated_bytes(dr.b, dr.tmp / "cb", "vm-thin-replica") <= written + MiB
    for name, data in oracle.items():
        assert read_disk(dr.b, f"vm-{name}-replica") == data, f"replica of plan {name} differs from its source"


async def test_replication_stopped_at_the_window_end_with_abort_window_unfinished(dr: DR) -> None:  # noqa: F811
    """abort_window_unfinished: a scheduled run still pulling when the window closes is
    stopped; the source's new snapshot is dropped, no replica point is recorded, the replica
    is left as it was (never seeded: NOT_READY) and its service slot is given back."""
    client = dr.client
    assert client is not None
    vm_id = dr.a.create_vm(VMConfig(name="slow", disks=[DiskSpec(name="disk0", size_bytes=64 * MiB)])).id
    with dr.a.open_disk(vm_id, "disk0", writable=True) as h:
        h.write(0, os.urandom(64 * MiB))  # incompressible: 64 MiB at 4 Mbit/s take 2 minutes
    dr.catalog.put_service(ReplicationService(name="b", site="b", replication_bandwidth_mbps=4))
    now = datetime.now(UTC)
    end = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
    if (end - now).total_seconds() < 20:
        end += timedelta(minutes=1)
    window = f"{end - timedelta(minutes=15):%H:%M}-{end:%H:%M}"
    abdr(dr, "replication-plan", "create", "win", "--source-site", "a", "--target-site", "b", "--target-cluster", "cb",
         "--vm", "ca/slow", "--schedule", "every 5m", "--window", window, "--retention", "count:5",
         "--abort-at-window-end")
    assert (await client.get_replication_plan("win")).spec.abort_window_unfinished is True
    result = await trigger_and_wait(dr, "win", kind="replication", result_type=ReplicationRunResult)
    assert datetime.now(UTC) >= end
    assert result.result == RunResult.FAILED, result
    [vm] = result.vms
    assert not vm.ok and vm.error == "stopped at the window's end", vm
    assert await client.list_restore_points(plan="win") == []
    assert dr.a.list_snapshots(vm_id) == []  # the run's source snapshot was dropped
    assert [r.state for r in await client.list_replicas("win")] == ["NOT_READY"]
    # The cancelled pull stops after the reads it has in flight (throttled) and gives its slot back.
    for _ in range(1200):
        if not dr.catalog.slot_leases():
            break
        await asyncio.sleep(0.1)
    assert dr.catalog.slot_leases() == []
