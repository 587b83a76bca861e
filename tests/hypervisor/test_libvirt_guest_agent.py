"""FILE_SYSTEM_CONSISTENT snapshots of a running libvirt VM, through a real QEMU guest agent
in the tiny guest (build_guest(agent=True)): libvirt quiesces through the agent, whose
fsfreeze hook pauses the guest's writer between two writes and names the last one, so the
snapshot must hold exactly that write sequence, nothing in flight, and the guest must write
on after the thaw. Guest tools that do not work (an agent not started, stopped, or a freeze
that never ends) are refused as GuestToolsMissing, with nothing changed and the VM still
snapshottable crash-consistently."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from drivers.base import GuestToolsMissing
from drivers.libvirt import LibvirtDriver
from models.inventory import VM, Consistency, DiskSpec, PowerState, VMConfig
from starter.stack.guest import pattern
from starter.stack.guest.initramfs import GuestImage
from tests.guest.domain import MEMORY_MIB, Guest
from tests.hypervisor.test_libvirt_driver_guest import read_view

pytestmark = pytest.mark.hypervisor
DISK = 32 * 1024 * 1024


def boot_agent_guest(cluster: LibvirtDriver, conn: libvirt.virConnect, image: GuestImage,
                     agent: str) -> tuple[VM, Guest]:
    """A VM with guest tools (the agent channel) created through the driver, booted until the
    guest writes; `agent` is init.sh's abdr.agent mode."""
    vm = cluster.create_vm(VMConfig(
        name=f"agent-{agent}", memory_mib=MEMORY_MIB, disks=[DiskSpec(name="disk0", size_bytes=DISK)],
        guest_tools=True,
        platform={"kernel": str(image.kernel), "initrd": str(image.initrd),
                  "cmdline": f"console=ttyS0 panic=-1 quiet abdr.mode=write abdr.interval_us=20000 abdr.agent={agent}"}))
    guest = Guest(conn.lookupByUUIDString(vm.id), Path(), cluster.root / "vms" / vm.id / "console.log")
    cluster.power_on(vm.id)
    guest.wait_for(pattern.READY)
    started = guest.wait_for(pattern.AGENT).group(1)
    assert (started == "off") == (agent == "off"), guest.output()
    return vm, guest


def test_file_system_consistent_snapshot_quiesces_through_the_agent(
        cluster: LibvirtDriver, conn: libvirt.virConnect, agent_image: GuestImage) -> None:
    vm, guest = boot_agent_guest(cluster, conn, agent_image, "on")
    guest.wait_counter(50)

    snap = cluster.create_snapshot(vm.id, "fs", Consistency.FILE_SYSTEM_CONSISTENT)
    assert snap.consistency == Consistency.FILE_SYSTEM_CONSISTENT
    frozen_at = int(guest.wait_for(pattern.FREEZE).group(1))
    guest.wait_for(pattern.THAW)  # the agent thaws (and runs the hook) only after it froze a file system
    view = pattern.check_image(read_view(cluster, vm.id, snap.id))
    assert view.ok, f"bad blocks {view.bad_blocks[:5]}"
    # quiesced: exactly the writes up to the one the hook paused after, none in flight
    assert (view.counter, view.in_flight) == (frozen_at, False)
    assert len(pattern.FREEZE.findall(guest.output())) == 1
    guest.wait_counter(frozen_at + 50)  # thawed: the guest writes on
    assert [s.name for s in cluster.list_snapshots(vm.id)] == ["fs"]


@pytest.mark.parametrize("agent", ["off", "stopped", "hang"])
def test_guest_tools_that_do_not_answer_are_refused(cluster: LibvirtDriver, conn: libvirt.virConnect,
                                                    agent_image: GuestImage, agent: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """off: never connected (libvirt fails at once); stopped: connected but mute (libvirt's
    guest-sync gives up); hang: the freeze never returns (the driver's agent timeout, short
    here, ends it)."""
    monkeypatch.setenv("ABDR_LIBVIRT_AGENT_TIMEOUT_S", "5")
    vm, guest = boot_agent_guest(cluster, conn, agent_image, agent)
    if agent == "stopped":
        guest.wait_for(pattern.AGENT_STOPPED)
    c0 = guest.wait_counter(50)

    with pytest.raises(GuestToolsMissing, match="guest agent"):
        cluster.create_snapshot(vm.id, "fs", Consistency.FILE_SYSTEM_CONSISTENT)
    assert cluster.list_snapshots(vm.id) == []
    assert cluster.get_vm(vm.id).power_state == PowerState.RUNNING
    assert pattern.THAW.search(guest.output()) is None

    snap = cluster.create_snapshot(vm.id, "crash")  # the VM is left as it was: crash-consistent works
    view = pattern.check_image(read_view(cluster, vm.id, snap.id))
    assert view.ok and view.counter >= c0
    guest.wait_counter(view.counter + 50)  # and the guest writes on
