"""abdr end to end on libvirt clusters with a real booting guest that keeps writing: the
real dev server, an orchestration worker and two site workers as separate processes, two
libvirt clusters on this host in two sites. The oracle is the guest's own write sequence
(starter/stack/guest/pattern.py): any disk abdr produces must be exactly the guest's disk after
writes 1..C for the C its head block names (the one write in flight aside), and a restored
or failed-over VM must boot and say on its own console which C it found."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from drivers.base import ClusterDriver
from drivers.catalog.store import Catalog
from drivers.libvirt import LibvirtDriver
from drivers.local import LocalDriver
from models.inventory import VM, DiskSpec, PowerState, ShutdownMode, Site, VMConfig
from models.jobs import TransferProgress
from models.plans import BackupPlanSpec, RunResult
from models.replication import ReplicationPlanSpec
from models.requests import (
    FailbackRequest,
    FailoverRequest,
    PermanentFailoverRequest,
    RestoreMode,
    RestoreRequest,
)
from models.restore_points import PointType
from models.services import BackupService, RepositorySpec
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from starter.stack.guest import pattern
from starter.stack.guest.initramfs import GuestImage
from tests.e2e.histories import quiesce
from tests.e2e.observe import wait_heartbeat
from tests.e2e.processes import WORKER_ROLES, DevServer, WorkerProcess
from tests.e2e.test_replication import server  # noqa: F401  (the module's dev server fixture)
from tests.guest.domain import MEMORY_MIB, Guest
from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir
from tests.quiet import quiet_time

pytestmark = pytest.mark.hypervisor
DISK = 32 * 1024 * 1024
ABDR = str(Path(sys.executable).parent / "abdr")


@dataclass
class KVM:
    """Two libvirt clusters (ka in site a, kb in site b) on this host, the workers serving
    them as processes, and a client."""

    server: DevServer
    tmp: Path
    env: dict[str, str]
    ka: LibvirtDriver
    kb: LibvirtDriver
    la: LocalDriver  # a local cluster in site a beside ka
    conn: libvirt.virConnect
    client: AbdrClient
    catalog_url: str
    procs: dict[str, WorkerProcess] = field(default_factory=dict)

    def start(self, role: str) -> None:
        self.procs[role] = WorkerProcess(self.env, self.tmp / f"{role}-{len(self.procs)}.log", *WORKER_ROLES[role])

    def guest(self, driver: LibvirtDriver, vm_name: str) -> Guest:
        vm = driver.find_vm(vm_name)
        assert vm is not None, vm_name
        g = Guest(self.conn.lookupByUUIDString(vm.id), Path(), driver.root / "vms" / vm.id / "console.log")
        g.mark = g.console.stat().st_size if g.console.exists() else 0  # from now on
        return g


@pytest.fixture
async def kvm(server: DevServer, tmp_path: Path) -> AsyncIterator[KVM]:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    env = {"ABDR_TEMPORAL_ADDRESS": server.address, "ABDR_DATA_DIR": str(tmp_path / "state"),
           "ABDR_DATABASE_URL": url, "ABDR_SHUTDOWN_GRACE_S": "1", "ABDR_TRANSPORT_TOKEN": "test-token-123"}
    catalog = Catalog(url)
    for site in ("a", "b"):
        catalog.add_site(Site(name=site))
    catalog.close()
    endpoints = {c: f"qemu:///system#{fresh_cluster_dir()}" for c in ("ka", "kb")}
    conn = libvirt.open("qemu:///system")
    temporal = await Client.connect(server.address, data_converter=pydantic_data_converter)
    client = AbdrClient(temporal, Settings(temporal_address=server.address, data_dir=tmp_path / "state",
                                           database_url=url))
    world = KVM(server, tmp_path, env, LibvirtDriver(endpoints["ka"], "ka"), LibvirtDriver(endpoints["kb"], "kb"),
                LocalDriver(tmp_path / "la", "la"), conn, client, url)
    try:
        for role in ("orchestrator", "a", "b"):
            world.start(role)
        await quiesce(temporal)
        await client.add_cluster("ka", "a", "libvirt", endpoints["ka"])
        await client.add_cluster("kb", "b", "libvirt", endpoints["kb"])
        await client.add_cluster("la", "a", "local", str(tmp_path / "la"))
        await client.create_repository(RepositorySpec(name="r1", path=str(tmp_path / "repo"), site="a"))
        yield world
    finally:
        await quiesce(temporal)
        for p in world.procs.values():
            p.kill()
        for e in endpoints.values():
            remove_cluster_dir(e)
        conn.close()


def guest_config(image: GuestImage, name: str) -> VMConfig:
    return VMConfig(name=name, memory_mib=MEMORY_MIB, disks=[DiskSpec(name="disk0", size_bytes=DISK, boot=True)],
                    platform={"kernel": str(image.kernel), "initrd": str(image.initrd),
                              "cmdline": "console=ttyS0 panic=-1 quiet abdr.mode=write abdr.interval_us=20000"})


def boot_writing_guest(kvm: KVM, image: GuestImage, name: str, writes: int) -> tuple[VM, Guest]:
    """A guest VM on ka, booted and past its first `writes` writes."""
    vm = kvm.ka.create_vm(guest_config(image, name))
    g = kvm.guest(kvm.ka, name)
    kvm.ka.power_on(vm.id)
    g.wait_for(pattern.READY)
    g.wait_counter(writes)
    return vm, g


def disk_of(driver: ClusterDriver, vm_name: str) -> bytes:
    vm = driver.find_vm(vm_name)
    assert vm is not None, vm_name
    with driver.open_disk(vm.id, "disk0") as h:
        return h.read(0, h.size)


def guest_state(image: bytes, what: str) -> int:
    """The C of a disk that is exactly the guest's disk after writes 1..C (else fail)."""
    check = pattern.check_image(image)
    assert check.ok, f"{what}: not a state of the guest's writes; bad blocks {check.bad_blocks[:5]}"
    return check.counter


def plan_spec(vm: str) -> BackupPlanSpec:
    return BackupPlanSpec.model_validate({
        "name": "gold", "vms": [{"cluster": "ka", "vm": vm}], "repository": "r1",
        "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 10}})


async def run_plan(kvm: KVM) -> Any:
    result = await kvm.client.plan_run_result(await kvm.client.run_backup_plan("gold"))
    assert result.result == RunResult.SUCCESS, result
    [vm] = result.vms
    return vm


async def restore_boots(kvm: KVM, point_id: str, name: str) -> int:
    """REBUILD the point as `name`: its disk must be a whole state C of the guest's writes,
    and the restored VM, booted, must say on its own console that it found C."""
    await kvm.client.restore_result(await kvm.client.restore(
        RestoreRequest(point_id=point_id, mode=RestoreMode.REBUILD, new_name=name)))
    c = guest_state(disk_of(kvm.ka, name), f"point {point_id} restored as {name}")
    vm = kvm.ka.find_vm(name)
    assert vm is not None
    g = kvm.guest(kvm.ka, name)
    kvm.ka.power_on(vm.id)
    ready = g.wait_for(pattern.READY)
    assert int(ready.group(3)) == c, f"{name} booted and found c={ready.group(3)}, its disk says {c}"
    kvm.ka.power_off(vm.id)
    kvm.ka.delete_vm(vm.id)
    return c


def logged(g: Guest) -> int:
    got = [int(x) for x in pattern.LOG.findall(g.output())]
    return got[-1] if got else 0


async def test_backup_of_a_running_guest_and_restores_that_boot(kvm: KVM, image: GuestImage) -> None:
    vm, g = boot_writing_guest(kvm, image, "g1", 50)
    await kvm.client.create_backup_plan(plan_spec("g1"))

    before = logged(g)
    first = await run_plan(kvm)
    assert first.type == PointType.FULL
    g.wait_counter(logged(g) + 30)  # the guest keeps writing, 4 KiB at a time spread over the disk
    second = await run_plan(kvm)
    assert second.type == PointType.INCREMENTAL, second.full_reason
    c1 = await restore_boots(kvm, first.point_id, "g1-full")
    assert before <= c1, "the point is a state from while the backup ran"
    c2 = await restore_boots(kvm, second.point_id, "g1-incr")
    assert c2 > c1
    # the incremental read only chunks the guest's writes c1+1..c2+1 touched (and the head's)
    [d] = second.disks
    nblk, chunk = DISK // pattern.BLOCK, 128 * 1024
    touched = {0} | {pattern.position(c, nblk) * pattern.BLOCK // chunk for c in range(c1 + 1, c2 + 2)}
    assert 0 < d.read_bytes <= len(touched) * chunk < DISK, (d, len(touched))

    # INPLACE onto the stopped VM: the guest's own shutdown, then more writes to undo
    kvm.ka.shutdown(vm.id, timeout_s=120)
    oracle = disk_of(kvm.ka, "g1")
    c3 = guest_state(oracle, "g1 after its shutdown")
    third = await run_plan(kvm)
    kvm.ka.power_on(vm.id)
    g = kvm.guest(kvm.ka, "g1")
    g.wait_counter(c3 + 50)
    kvm.ka.shutdown(vm.id, timeout_s=120)
    assert disk_of(kvm.ka, "g1") != oracle
    await kvm.client.restore_result(await kvm.client.restore(
        RestoreRequest(point_id=third.point_id, mode=RestoreMode.INPLACE, vm="ka/g1")))
    assert disk_of(kvm.ka, "g1") == oracle
    g = kvm.guest(kvm.ka, "g1")
    kvm.ka.power_on(vm.id)
    assert int(g.wait_for(re.compile(pattern.READY.pattern)).group(3)) == c3
    kvm.ka.power_off(vm.id)


def replication_plan(vm: str, **over: Any) -> ReplicationPlanSpec:
    data: dict[str, Any] = {
        "name": "dr", "kind": "CROSS_SITE", "source_site": "a", "source_cluster": "ka", "target_site": "b",
        "target_cluster": "kb", "vms": [{"cluster": "ka", "vm": vm}],
        "schedule": {"kind": "DAILY", "times": [quiet_time()]}, "retention": {"kind": "COUNT", "value": 5}}
    data.update(over)
    return ReplicationPlanSpec.model_validate(data)


async def replicate(kvm: KVM, plan: str = "dr") -> Any:
    result = await kvm.client.result(await kvm.client.run_replication_plan(plan))
    assert result.result == RunResult.SUCCESS, result
    [vm] = result.vms
    return vm


async def test_replication_failover_and_failback_boot_the_guest(kvm: KVM, image: GuestImage) -> None:
    """libvirt -> libvirt across two sites on one host: the replica is a whole state of the
    guest's writes after every run; failover boots it and it finds that state; it serves and
    writes on; failback moves only what changed and the original boots with the replica's
    last state."""
    vm, g = boot_writing_guest(kvm, image, "g2", 50)
    await kvm.client.create_replication_plan(replication_plan("g2"))

    seed = await replicate(kvm)
    assert seed.seeded
    c_seed = guest_state(disk_of(kvm.kb, "g2-replica"), "replica after the seed")
    g.wait_counter(c_seed + 30)
    delta = await replicate(kvm)
    assert not delta.seeded and 0 < delta.moved_bytes < DISK // 2
    c_point = guest_state(disk_of(kvm.kb, "g2-replica"), "replica after the delta")
    assert c_point > c_seed

    replica_g = kvm.guest(kvm.kb, "g2-replica")
    fo = await AbdrClient.result(await kvm.client.failover(FailoverRequest(
        plan="dr", vm="g2", source_shutdown=ShutdownMode.SHUTDOWN, shutdown_timeout_s=120)))
    assert fo.state == "FAILOVER" and fo.point_id == delta.point_id
    assert kvm.ka.find_vm("g2").power_state == PowerState.STOPPED  # type: ignore[union-attr]
    assert int(replica_g.wait_for(pattern.READY).group(3)) == c_point, "the replica booted the point's state"
    replica_g.wait_counter(c_point + 60)  # it serves, and writes

    original_g = kvm.guest(kvm.ka, "g2")
    fb = await AbdrClient.result(await kvm.client.failback(FailbackRequest(plan="dr", vm="g2")))
    assert fb.state == "READY"
    c_served = guest_state(disk_of(kvm.kb, "g2-replica"), "replica after failback")
    assert c_served >= c_point + 60
    assert int(original_g.wait_for(pattern.READY).group(3)) == c_served, "the original booted the replica's state"
    assert 0 < fb.moved_bytes < fb.disk_bytes, fb
    assert kvm.kb.find_vm("g2-replica").power_state == PowerState.STOPPED  # type: ignore[union-attr]


async def test_local_to_libvirt_failover_and_permanent_failover_with_reprotect(kvm: KVM, image: GuestImage) -> None:
    """A local VM holding the guest's disk after 400 writes (and its boot settings) is
    replicated onto the libvirt cluster; failover boots it there and it finds c=400; made
    permanent with reprotect, the reverse plan replicates the running guest back onto the
    local original (libvirt -> local), a whole state of its writes each time."""
    nblk = DISK // pattern.BLOCK
    src = kvm.la.create_vm(guest_config(image, "p1"))
    with kvm.la.open_disk(src.id, "disk0", writable=True) as h:
        h.write(0, pattern.expected_image(nblk, 400))
        h.flush()
    await kvm.client.create_replication_plan(replication_plan(
        "p1", name="lv", source_cluster="la", vms=[{"cluster": "la", "vm": "p1"}]))
    seed = await replicate(kvm, "lv")
    assert seed.seeded
    assert guest_state(disk_of(kvm.kb, "p1-replica"), "libvirt replica of the local VM") == 400

    replica_g = kvm.guest(kvm.kb, "p1-replica")
    await AbdrClient.result(await kvm.client.failover(FailoverRequest(plan="lv", vm="p1")))
    assert int(replica_g.wait_for(pattern.READY).group(3)) == 400, "the replica booted the local VM's state"
    replica_g.wait_counter(460)

    done = await AbdrClient.result(await kvm.client.permanent_failover(
        PermanentFailoverRequest(plan="lv", vm="p1", reprotect=True)))
    assert done.state == "PERMANENT_FAILOVER"
    assert 0 < done.details["seed_moved_bytes"] < DISK, done.details  # the first reverse sync is a delta
    c_back = guest_state(disk_of(kvm.la, "p1"), "local original after the reprotect seed")
    assert c_back >= 460
    replica_g.wait_counter(c_back + 30)  # the new production guest writes on
    again = await replicate(kvm, done.details["reverse_plan"])
    assert not again.seeded
    assert guest_state(disk_of(kvm.la, "p1"), "local original after the reverse replication") > c_back


async def test_failover_test_boots_an_isolated_copy_and_its_console_is_the_evidence(kvm: KVM, image: GuestImage) -> None:
    """The drill's copy of the replica point boots with no network; the test passes on what
    the copy printed itself (its READY line names the point's write counter), through the
    CLI a user runs, and the copy is gone after the cleanup."""
    vm, g = boot_writing_guest(kvm, image, "g3", 50)
    await kvm.client.create_replication_plan(replication_plan("g3"))
    await replicate(kvm)
    c_point = guest_state(disk_of(kvm.kb, "g3-replica"), "replica")

    env = {**kvm.env, "ABDR_DATA_DIR": str(kvm.tmp / "cli")}
    proc = await asyncio.create_subprocess_exec(
        ABDR, "failover-test", "start", "dr", "g3", "--expect-console", r"ABDR-GUEST-READY mode=write",
        "--boot-timeout", "300", "--wait", "--json", env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    evidence = json.loads(out)
    assert evidence["evidence"] == "guest" and evidence["booted"] is True, evidence
    assert evidence["power_state"] == "RUNNING" and evidence["agent_ping"] is None  # no agent in this guest
    ready = pattern.READY.search(evidence["console_tail"])
    assert ready and int(ready.group(3)) == c_point, "the copy booted the tested point's state"
    copy = kvm.kb.find_vm("g3-replica-test")
    assert copy is not None and copy.config.nics == []  # nothing to reach production with

    done = await kvm.client.cleanup_failover_test("dr", "g3")
    assert done.state == "READY" and kvm.kb.find_vm("g3-replica-test") is None


async def test_qemu_killed_mid_write_then_the_next_backup_holds_what_the_disk_had(kvm: KVM, image: GuestImage) -> None:
    """SIGKILL of the guest's QEMU while it writes: the disk is a crash-consistent state of
    its writes; the next backup, an incremental (frozen overlay files cannot lose what
    changed), restores to exactly that disk and boots; the older point is still whole."""
    vm, g = boot_writing_guest(kvm, image, "g4", 50)
    await kvm.client.create_backup_plan(plan_spec("g4"))
    first = await run_plan(kvm)
    g.wait_counter(logged(g) + 30)
    os.kill(g.qemu_pid(), signal.SIGKILL)
    g.wait_shutoff()
    assert kvm.ka.get_vm(vm.id).power_state == PowerState.STOPPED
    oracle = disk_of(kvm.ka, "g4")  # the bytes the disk had when QEMU died
    c_kill = guest_state(oracle, "g4 after SIGKILL of its QEMU")

    second = await run_plan(kvm)
    assert second.type == PointType.INCREMENTAL, second.full_reason
    await kvm.client.restore_result(await kvm.client.restore(
        RestoreRequest(point_id=second.point_id, mode=RestoreMode.REBUILD, new_name="g4-after-kill")))
    assert disk_of(kvm.ka, "g4-after-kill") == oracle
    assert await restore_boots(kvm, first.point_id, "g4-first") < c_kill


async def test_site_worker_killed_mid_backup_resumes_and_the_point_is_whole(kvm: KVM, image: GuestImage) -> None:
    """The site worker is SIGKILLed while it reads a running guest's snapshot (slowed to
    1 MiB/s): a new worker resumes from the progress the server recorded, and the point is a
    whole state of the guest's writes that boots."""
    boot_writing_guest(kvm, image, "g5", 250)  # ~250 clusters of 64 KiB written: ~16 MiB to read
    catalog = Catalog(kvm.catalog_url)
    catalog.put_service(BackupService(name="default", site="a", backup_read_iops=16))  # 64 KiB reads: 1 MiB/s
    catalog.close()
    await kvm.client.create_backup_plan(plan_spec("g5"))
    run = await kvm.client.run_backup_plan("gold")
    seen = await wait_heartbeat(kvm.client.client, "backup/gold/ka/g5", "transfer_backup", TransferProgress,
                                "bytes_done", 2 * 1024 * 1024)
    kvm.procs["a"].kill()
    kvm.start("a")
    result = await kvm.client.plan_run_result(run)
    assert result.result == RunResult.SUCCESS, result
    [done] = result.vms
    [disk] = done.disks
    assert disk.resumed_chunks >= seen.chunk_index > 0
    assert await restore_boots(kvm, done.point_id, "g5-resumed") > 0
