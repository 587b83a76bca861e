"""`abdr up`'s libvirt demo (ABDR_DEMO_LIBVIRT=true): a cluster `kvm` on this host's
libvirt, a tiny real guest `tiny` booted in it (the Debian kernel and a busybox initramfs
that keeps writing a self-checking pattern: starter/stack/guest), and a backup plan
`demo-kvm` protecting it every 5 minutes. Each step checks what exists, so an interrupted
seed completes on the next start; nothing is done when the plan exists."""

from __future__ import annotations

import asyncio
from pathlib import Path

from models.inventory import DiskSpec, VMConfig
from starter.client import AbdrClient
from starter.runtime.settings import Settings

CLUSTER, VM, PLAN = "kvm", "tiny", "demo-kvm"
DISK_BYTES = 32 << 20
MEMORY_MIB = 128  # the Debian kernel does not start in 64 MiB
CMDLINE = "console=ttyS0 panic=-1 quiet abdr.mode=write abdr.interval_us=50000"


def endpoint(settings: Settings) -> str:
    return f"qemu:///system#{settings.demo_libvirt_dir.absolute() / 'cluster'}"


def _boot_guest(settings: Settings) -> tuple[str, Path]:
    """The guest VM, created and started if missing; (its id, its console log)."""
    from drivers.libvirt import LibvirtDriver
    from starter.stack.guest.initramfs import build_guest

    root = settings.demo_libvirt_dir.absolute()
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # QEMU (libvirt-qemu) reads the kernel and initrd below it
    driver = LibvirtDriver(endpoint(settings), CLUSTER)
    vm = driver.find_vm(VM)
    if vm is None:
        image = build_guest(root / "guest")
        vm = driver.create_vm(VMConfig(
            name=VM, memory_mib=MEMORY_MIB, disks=[DiskSpec(name="disk0", size_bytes=DISK_BYTES, boot=True)],
            description="abdr's libvirt demo guest: writes a self-checking pattern to disk0",
            platform={"kernel": str(image.kernel), "initrd": str(image.initrd), "cmdline": CMDLINE}))
    driver.power_on(vm.id)
    return vm.id, driver.root / "vms" / vm.id / "console.log"


async def seed_libvirt_demo(client: AbdrClient, settings: Settings, repository: str) -> list[str]:
    if not settings.demo_libvirt or PLAN in {p.spec.name for p in await client.list_backup_plans()}:
        return []
    if CLUSTER not in {c.name for c in await client.list_clusters()}:
        await client.add_cluster(CLUSTER, settings.site, "libvirt", endpoint(settings))
    from starter.stack.demo import ensure_repository, plan_spec

    vm_id, console = await asyncio.to_thread(_boot_guest, settings)
    await ensure_repository(client, settings, repository)
    await client.create_backup_plan(plan_spec(PLAN, CLUSTER, (VM,), repository, "libvirt demo plan seeded by abdr up"))
    return [
        f"libvirt demo seeded (ABDR_DEMO_LIBVIRT): cluster {CLUSTER} at {endpoint(settings)}",
        f"  VM {VM} ({vm_id}) booted: a tiny real guest writing to its disk; its console: {console}",
        f"  backup plan {PLAN}: every 5 minutes; abdr backup-plan run {PLAN} --wait",
    ]
