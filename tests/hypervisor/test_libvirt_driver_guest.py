"""abdr's libvirt driver on a real, booting QEMU guest that keeps writing: snapshots of the
running VM, changed extents between them, live deletion of snapshots (a libvirt block
commit, into the middle of the chain and into the active file), the ACPI shutdown and the
guest-tools refusal. The oracle is the guest's own write sequence (starter/stack/guest/pattern.py):
every view must be a crash-consistent state of it, and changed extents must cover every
block that differs between two views and lie within the blocks the guest wrote between
them, never a flag the driver set."""

from __future__ import annotations

import re
from pathlib import Path

import libvirt
import pytest

from drivers.base import GuestToolsMissing, Unsupported, extents_to_blocks
from drivers.libvirt import LibvirtDriver
from models.inventory import Consistency, DiskSpec, PowerState, VMConfig
from starter.stack.guest import pattern
from starter.stack.guest.initramfs import GuestImage
from tests.guest.domain import MEMORY_MIB, Guest

pytestmark = pytest.mark.hypervisor
DISK = 32 * 1024 * 1024
BS = 64 * 1024


def guest_config(image: GuestImage, name: str) -> VMConfig:
    return VMConfig(name=name, memory_mib=MEMORY_MIB, disks=[DiskSpec(name="disk0", size_bytes=DISK)],
                    platform={"kernel": str(image.kernel), "initrd": str(image.initrd),
                              "cmdline": "console=ttyS0 panic=-1 quiet abdr.mode=write abdr.interval_us=20000"})


def read_view(d: LibvirtDriver, vm_id: str, snap_id: str | None) -> bytes:
    with d.open_disk(vm_id, "disk0", snap_id) as h:
        return h.read(0, h.size)


def written_blocks(c0: int, c1: int, nblk: int) -> set[int]:
    """64 KiB blocks the guest's writes c0+1..c1+1 touch (the head, and each data block;
    write c1+1 may be in flight)."""
    per = BS // pattern.BLOCK
    out = {0}
    for c in range(c0 + 1, c1 + 2):
        out.add(pattern.position(c, nblk) // per)
    return out


def diff_blocks(a: bytes, b: bytes) -> set[int]:
    return {i // BS for i in range(0, len(a), BS) if a[i:i + BS] != b[i:i + BS]}


def test_running_guest_snapshots_cbt_live_merges_and_acpi(cluster: LibvirtDriver, conn: libvirt.virConnect,
                                                          image: GuestImage) -> None:
    vm = cluster.create_vm(guest_config(image, "writer"))
    dom = conn.lookupByUUIDString(vm.id)
    console = cluster.root / "vms" / vm.id / "console.log"
    guest = Guest(dom, Path(), console)
    guest.mark = 0
    cluster.power_on(vm.id)
    assert cluster.get_vm(vm.id).power_state == PowerState.RUNNING
    ready = guest.wait_for(pattern.READY)
    nblk = int(ready.group(2))

    with pytest.raises(GuestToolsMissing, match="guest tools"):
        cluster.create_snapshot(vm.id, "fs", Consistency.FILE_SYSTEM_CONSISTENT)

    guest.wait_counter(60)
    s1 = cluster.create_snapshot(vm.id, "s1")
    guest.wait_counter(pattern.counter(read_view(cluster, vm.id, s1.id)) + 100)
    s2 = cluster.create_snapshot(vm.id, "s2")
    guest.wait_counter(pattern.counter(read_view(cluster, vm.id, s2.id)) + 50)
    s3 = cluster.create_snapshot(vm.id, "s3")

    views = {s.id: read_view(cluster, vm.id, s.id) for s in (s1, s2, s3)}
    checks = {k: pattern.check_image(v) for k, v in views.items()}
    for s in (s1, s2, s3):
        assert checks[s.id].ok, f"{s.name} is not a crash-consistent state: bad blocks {checks[s.id].bad_blocks[:5]}"
    c1, c2, c3 = (checks[s.id].counter for s in (s1, s2, s3))
    assert 0 < c1 < c2 < c3

    changed = extents_to_blocks(cluster.changed_extents(vm.id, "disk0", s1.id, s2.id), BS)
    assert diff_blocks(views[s1.id], views[s2.id]) <= changed, "a block that changed is not reported"
    assert changed <= written_blocks(c1, c2, nblk), "a block nobody wrote is reported"

    # live merges: s2's file into s1's (the middle of the chain), then s3's into the active file
    cluster.delete_snapshot(vm.id, s1.id)
    assert read_view(cluster, vm.id, s2.id) == views[s2.id]
    assert read_view(cluster, vm.id, s3.id) == views[s3.id]
    cluster.delete_snapshot(vm.id, s3.id)
    assert read_view(cluster, vm.id, s2.id) == views[s2.id]
    assert [s.name for s in cluster.list_snapshots(vm.id)] == ["s2"]
    guest.wait_counter(c3 + 50)  # the guest writes on through the pivot

    stopped = cluster.shutdown(vm.id, timeout_s=120)
    assert stopped.power_state == PowerState.STOPPED
    off = int(guest.wait_for(re.compile(pattern.POWEROFF.pattern)).group(1))
    final = pattern.check_image(read_view(cluster, vm.id, None))
    assert final.ok and final.counter == off > c3
    # what changed since s2 covers everything that differs from it
    changed = extents_to_blocks(cluster.changed_extents(vm.id, "disk0", s2.id), BS)
    assert diff_blocks(views[s2.id], read_view(cluster, vm.id, None)) <= changed


def test_a_raw_disk_is_listed_and_refused_with_the_fix(cluster: LibvirtDriver, conn: libvirt.virConnect) -> None:
    """A domain defined outside abdr with a raw disk in the cluster's directory is listed,
    and a snapshot of it is refused, saying how to convert the disk; nothing changes."""
    raw = cluster.root / "legacy.raw"
    raw.write_bytes(b"\x01" * BS)
    conn.defineXML(f"""<domain type='qemu'><name>legacy-{cluster.root.name}</name><memory unit='MiB'>64</memory>
      <os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>
      <driver name='qemu' type='raw'/><source file='{raw}'/><target dev='vda' bus='virtio'/>
      </disk></devices></domain>""")
    [vm] = cluster.list_vms()
    assert vm.name == f"legacy-{cluster.root.name}" and vm.config.disks[0].name == "vda"
    with pytest.raises(Unsupported, match="is raw, not qcow2.*qemu-img convert -O qcow2"):
        cluster.create_snapshot(vm.id, "s1")
    assert cluster.list_snapshots(vm.id) == []
    assert raw.read_bytes() == b"\x01" * BS
    assert sorted(p.name for p in cluster.root.rglob("*.qcow2")) == []
