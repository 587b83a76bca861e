"""The simulated AOC's inventory (a host per cluster), and a VM made from a snapshot by the
AOC itself (rebuild-vm-from-snapshot, what a failover test's copy uses on the aoc driver):
it reads as the snapshot did, byte for byte against the bytes written before it was taken,
and shares nothing with its source afterwards."""

from __future__ import annotations

import pytest

from drivers.aoc.driver import AocDriver
from drivers.base import ClonesFromSnapshot, NotFound
from models.inventory import NIC, PowerState
from tests.drivers.helpers import BS, data, make_vm, read_all
from tests.drivers.test_aoc_faults import aoc  # noqa: F401 (the fixture: a fresh cluster)

SIZE = 16 * BS


def test_a_vm_rebuilt_from_a_snapshot_reads_as_the_snapshot_and_stands_alone(aoc: AocDriver) -> None:
    assert isinstance(aoc, ClonesFromSnapshot)
    vm = make_vm(aoc, "src", ("disk0", SIZE), ("disk1", 2 * BS))
    aoc.write(vm.id, "disk0", 3 * BS, data(1, 2 * BS))
    aoc.write(vm.id, "disk1", 0, data(2, BS))
    at_snap = {"disk0": bytes(3 * BS) + data(1, 2 * BS) + bytes(SIZE - 5 * BS), "disk1": data(2, BS) + bytes(BS)}
    snap = aoc.create_snapshot(vm.id, "s1")
    aoc.write(vm.id, "disk0", 3 * BS, data(3, BS))  # after the snapshot: not in the copy

    want = snap.config.model_copy(update={"name": "copy", "description": "a test copy",
                                          "nics": [NIC(name="nic0", network="vlan-test", mac="52:54:00:00:00:01")]})
    copy = aoc.clone_from_snapshot(vm.id, snap.id, want)
    assert copy.power_state == PowerState.STOPPED and copy.id != vm.id
    assert copy.config.name == "copy" and copy.config.description == "a test copy"
    assert [n.network for n in copy.config.nics] == ["vlan-test"]
    assert [(d.name, d.size_bytes) for d in copy.config.disks] == [("disk0", SIZE), ("disk1", 2 * BS)]
    for disk, oracle in at_snap.items():
        assert read_all(aoc, copy.id, disk) == oracle

    aoc.write(copy.id, "disk1", 0, data(4, BS))  # the copy's writes stay the copy's
    aoc.delete_snapshot(vm.id, snap.id)  # and the snapshot's end is not the copy's
    assert read_all(aoc, copy.id, "disk0") == at_snap["disk0"]
    assert read_all(aoc, copy.id, "disk1") == data(4, BS) + bytes(BS)
    assert read_all(aoc, vm.id, "disk1") == at_snap["disk1"]
    assert read_all(aoc, vm.id, "disk0")[3 * BS:4 * BS] == data(3, BS)


def test_a_rebuild_from_a_snapshot_that_is_not_there_changes_nothing(aoc: AocDriver) -> None:
    vm = make_vm(aoc, "src")
    snap = aoc.create_snapshot(vm.id, "s1")
    aoc.delete_snapshot(vm.id, snap.id)
    with pytest.raises(NotFound):
        aoc.clone_from_snapshot(vm.id, snap.id, snap.config.model_copy(update={"name": "copy"}))
    assert aoc.find_vm("copy") is None


def test_each_cluster_has_a_host_its_vms_name(aoc: AocDriver) -> None:
    vm = make_vm(aoc, "placed")
    [host] = aoc.c.read("get-hosts", {"cluster": {"id": aoc.cluster_id}})
    assert host["status"] == "CONNECTED_HEALTHY" and host["cluster"]["id"] == aoc.cluster_id
    [row] = aoc.c.read("get-vms", {"id": vm.id})
    assert row["host"] == {"id": host["id"], "name": host["name"]}
