"""The ClusterDriver contract: inventory, lifecycle, power, snapshots, rollback, extents and
data, checked byte for byte on real files. Every driver must pass this file unchanged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from drivers.base import (
    AlreadyExists,
    ClusterDriver,
    DiskHandle,
    DriverError,
    GuestToolsMissing,
    InvalidName,
    InvalidState,
    NotFound,
    OperationTimeout,
    OutOfRange,
    Unsupported,
    blocks_to_extents,
    extents_to_blocks,
)
from models.inventory import Consistency, DiskSpec, PowerState, VMConfig
from tests.drivers.conftest import BLANK_GUEST_ANSWERS_SHUTDOWN, DriverSpec
from tests.drivers.helpers import BS, blocks_of, config, data, diff_blocks, make_vm, read_all


def test_is_a_cluster_driver(driver: ClusterDriver) -> None:
    assert isinstance(driver, ClusterDriver)
    assert driver.cluster == "c1"
    assert driver.block_size > 0 and driver.block_size % 4096 == 0


# ------------------------------------------------------------------ inventory, lifecycle
def test_create_list_find_get_delete(driver: ClusterDriver, driver_spec: DriverSpec) -> None:
    assert driver.list_vms() == []
    a = make_vm(driver, "alpha", ("disk0", 4 * BS), ("data", 2 * BS))
    b = make_vm(driver, "beta")
    assert a.id != b.id and a.cluster == "c1"
    assert a.power_state == PowerState.STOPPED
    assert [v.name for v in driver.list_vms()] == ["alpha", "beta"]
    assert driver.find_vm("alpha") == a
    assert driver.find_vm("gamma") is None
    # another instance (another process, later) sees the same thing
    other = driver_spec.open()
    assert other.get_vm(a.id) == a
    # disks start empty at their size
    assert read_all(driver, a.id, "data") == bytes(2 * BS)
    assert driver.allocated_extents(a.id, "disk0") == []

    with pytest.raises(AlreadyExists, match="alpha"):
        make_vm(driver, "alpha")
    driver.delete_vm(a.id)
    with pytest.raises(NotFound):
        driver.get_vm(a.id)
    with pytest.raises(NotFound):
        driver.delete_vm(a.id)
    assert [v.name for v in driver.list_vms()] == ["beta"]
    assert make_vm(driver, "alpha").id != a.id  # the name is free again


def test_delete_running_vm_refused_and_deletes_snapshots(driver: ClusterDriver) -> None:
    vm = make_vm(driver)
    driver.create_snapshot(vm.id, "s1")
    driver.power_on(vm.id)
    with pytest.raises(InvalidState, match="RUNNING"):
        driver.delete_vm(vm.id)
    driver.power_off(vm.id)
    driver.delete_vm(vm.id)
    with pytest.raises(NotFound):
        driver.list_snapshots(vm.id)


def test_update_config_grow_add_remove_and_refuse_shrink(driver: ClusterDriver) -> None:
    vm = make_vm(driver, "vm1", ("disk0", 4 * BS), ("old", 2 * BS))
    driver.write(vm.id, "disk0", 0, data(1, 4 * BS))
    cfg = vm.config.model_copy(deep=True)
    cfg.vcpu, cfg.memory_mib = 4, 4096
    cfg.disks = [DiskSpec(name="disk0", size_bytes=6 * BS), DiskSpec(name="new", size_bytes=BS)]
    got = driver.update_vm_config(vm.id, cfg)
    assert got.config == cfg == driver.get_vm(vm.id).config
    assert read_all(driver, vm.id) == data(1, 4 * BS) + bytes(2 * BS)
    assert read_all(driver, vm.id, "new") == bytes(BS)
    with pytest.raises(NotFound, match="old"):
        driver.open_disk(vm.id, "old")

    shrink = cfg.model_copy(deep=True)
    shrink.disks[0].size_bytes = 2 * BS
    with pytest.raises(Unsupported, match=r"disk0.*shrink"):
        driver.update_vm_config(vm.id, shrink)
    assert driver.get_vm(vm.id).config == cfg


def test_rename_must_stay_unique(driver: ClusterDriver) -> None:
    a, _ = make_vm(driver, "a"), make_vm(driver, "b")
    cfg = a.config.model_copy(update={"name": "b"})
    with pytest.raises(AlreadyExists, match="'b'"):
        driver.update_vm_config(a.id, cfg)
    assert driver.update_vm_config(a.id, a.config.model_copy(update={"name": "c"})).name == "c"
    assert driver.find_vm("a") is None and driver.find_vm("c") is not None


# ------------------------------------------------------------------ power, network
def test_power_is_persisted_and_idempotent(driver: ClusterDriver, driver_spec: DriverSpec) -> None:
    vm = make_vm(driver)
    assert driver.power_on(vm.id).power_state == PowerState.RUNNING
    assert driver.power_on(vm.id).power_state == PowerState.RUNNING
    assert driver_spec.open().get_vm(vm.id).power_state == PowerState.RUNNING
    if BLANK_GUEST_ANSWERS_SHUTDOWN[driver_spec.kind]:
        assert driver.shutdown(vm.id, timeout_s=5).power_state == PowerState.STOPPED
    else:  # a real VM whose disk boots nothing has no OS to hear the ACPI button
        with pytest.raises(OperationTimeout, match="RUNNING"):
            driver.shutdown(vm.id, timeout_s=2)
        assert driver.get_vm(vm.id).power_state == PowerState.RUNNING
        driver.power_off(vm.id)
    assert driver.shutdown(vm.id, timeout_s=5).power_state == PowerState.STOPPED
    driver.power_on(vm.id)
    assert driver.power_off(vm.id).power_state == PowerState.STOPPED
    assert driver.power_off(vm.id).power_state == PowerState.STOPPED


def test_attach_network(driver: ClusterDriver) -> None:
    vm = make_vm(driver)
    got = driver.attach_network(vm.id, "nic0", "vlan-dr")
    assert got.config.nics[0].network == "vlan-dr"
    assert driver.get_vm(vm.id).config.nics[0].network == "vlan-dr"
    with pytest.raises(NotFound, match="nic9"):
        driver.attach_network(vm.id, "nic9", "vlan-dr")


# ------------------------------------------------------------------ names and ids
@pytest.mark.parametrize(
    ("bad", "why"),
    [("../evil", "path"), ("a/b", "path"), ("/etc", "path"), ("..", "path"), ("", "empty"),
     ("x" * 64, "64 characters"), (".hidden", "starts with"), ("a b", "contains")],
)
def test_bad_names_refused(driver: ClusterDriver, bad: str, why: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    vm = make_vm(driver)
    calls = [
        lambda: driver.find_vm(bad),
        lambda: driver.create_snapshot(vm.id, bad),
        lambda: driver.open_disk(vm.id, bad),
        lambda: driver.allocated_extents(vm.id, bad),
        lambda: driver.attach_network(vm.id, "nic0", bad),
        lambda: driver.create_vm(VMConfig.model_construct(**{**config("x").__dict__, "name": bad})),
    ]
    for call in calls:
        with pytest.raises(InvalidName, match=why):
            call()
    with pytest.raises(ValidationError):
        config(bad)  # the model refuses it too
    assert [v.name for v in driver.list_vms()] == ["vm1"]
    assert driver.list_snapshots(vm.id) == []


@pytest.mark.parametrize("bad", ["../../etc", "vm-../x", "", "vm-0123456789ab/../x"])
def test_bad_ids_are_not_found(driver: ClusterDriver, bad: str) -> None:
    vm = make_vm(driver)
    with pytest.raises(NotFound):
        driver.get_vm(bad)
    with pytest.raises(NotFound):
        driver.get_snapshot(vm.id, bad)
    with pytest.raises(NotFound):
        driver.read(vm.id, "disk0", 0, 1, snap_id=bad)


# ------------------------------------------------------------------ snapshots
def test_snapshot_create_list_get_delete(driver: ClusterDriver) -> None:
    vm = make_vm(driver, guest_tools=True)
    s1 = driver.create_snapshot(vm.id, "s1")
    s2 = driver.create_snapshot(vm.id, "s2", Consistency.FILE_SYSTEM_CONSISTENT)
    assert s1.consistency == Consistency.CRASH_CONSISTENT
    assert s2.consistency == Consistency.FILE_SYSTEM_CONSISTENT
    assert s1.vm_id == vm.id and s1.config == vm.config
    assert [s.id for s in driver.list_snapshots(vm.id)] == [s1.id, s2.id]  # oldest first
    assert driver.get_snapshot(vm.id, s2.id) == s2
    with pytest.raises(AlreadyExists, match="s1"):
        driver.create_snapshot(vm.id, "s1")
    driver.delete_snapshot(vm.id, s1.id)
    assert driver.list_snapshots(vm.id) == [s2]
    with pytest.raises(NotFound):
        driver.delete_snapshot(vm.id, s1.id)
    with pytest.raises(NotFound):
        driver.get_snapshot(vm.id, s1.id)


def test_fs_consistent_needs_guest_tools(driver: ClusterDriver) -> None:
    vm = make_vm(driver)
    with pytest.raises(GuestToolsMissing, match="guest tools"):
        driver.create_snapshot(vm.id, "s1", Consistency.FILE_SYSTEM_CONSISTENT)
    assert isinstance(GuestToolsMissing("x"), Unsupported)
    assert driver.list_snapshots(vm.id) == []


def test_snapshot_view_is_frozen(driver: ClusterDriver) -> None:
    size = 8 * BS
    vm = make_vm(driver, "vm1", ("disk0", size))
    driver.write(vm.id, "disk0", 0, data(1, size))
    s1 = driver.create_snapshot(vm.id, "s1")
    before = read_all(driver, vm.id)
    with driver.open_disk(vm.id, "disk0", writable=True) as w:
        for i in range(50):  # many overlapping, unaligned writes
            w.write((i * 7919) % (size - 1000), data(100 + i, 1000 + i * 13))
        w.flush()
    assert read_all(driver, vm.id) != before
    assert read_all(driver, vm.id, snap_id=s1.id) == before


def test_handles(driver: ClusterDriver) -> None:
    vm = make_vm(driver, "vm1", ("disk0", 4 * BS))
    s1 = driver.create_snapshot(vm.id, "s1")
    with driver.open_disk(vm.id, "disk0", s1.id) as h:
        assert isinstance(h, DiskHandle) and h.size == 4 * BS
        with pytest.raises(DriverError):
            h.write(0, b"x")
        with pytest.raises(OutOfRange):
            h.read(4 * BS - 1, 2)
        with pytest.raises(OutOfRange):
            h.read(-1, 1)
        assert h.read(4 * BS, 0) == b""
    with pytest.raises(InvalidState):
        driver.open_disk(vm.id, "disk0", s1.id, writable=True)
    with driver.open_disk(vm.id, "disk0") as ro:
        with pytest.raises(InvalidState, match="read-only"):
            ro.write(0, b"x")
    with pytest.raises(OutOfRange):
        driver.write(vm.id, "disk0", 4 * BS - 1, b"xy")
    with pytest.raises(NotFound, match="nodisk"):
        driver.open_disk(vm.id, "nodisk")


def test_open_snapshot_handle_sees_later_writes_correctly_and_deletion(driver: ClusterDriver) -> None:
    vm = make_vm(driver, "vm1", ("disk0", 4 * BS))
    driver.write(vm.id, "disk0", 0, data(1, 4 * BS))
    s1 = driver.create_snapshot(vm.id, "s1")
    with driver.open_disk(vm.id, "disk0", s1.id) as h, driver.open_disk(vm.id, "disk0", writable=True) as w:
        assert h.read(0, 4 * BS) == data(1, 4 * BS)
        w.write(BS, data(2, BS))
        s2 = driver.create_snapshot(vm.id, "s2")  # the handle learns about it
        w.write(BS, data(3, 2 * BS))
        assert h.read(0, 4 * BS) == data(1, 4 * BS)
        driver.delete_snapshot(vm.id, s2.id)
        assert h.read(0, 4 * BS) == data(1, 4 * BS)
        driver.delete_snapshot(vm.id, s1.id)
        for _ in range(2):  # and it stays that way
            with pytest.raises(NotFound):
                h.read(0, 1)


def test_one_driver_many_threads(driver: ClusterDriver) -> None:
    """Activities share one driver instance across a thread pool."""
    size = 32 * BS
    vm = make_vm(driver, "vm1", ("disk0", size))
    base = driver.create_snapshot(vm.id, "base")

    def work(t: int) -> set[int]:
        lo = t * 8 * BS
        with driver.open_disk(vm.id, "disk0", writable=True) as w, driver.open_disk(vm.id, "disk0", base.id) as r:
            for i in range(20):
                w.write(lo + (i % 8) * BS, data(t * 100 + i, BS))
                if i % 5 == 0:
                    driver.create_snapshot(vm.id, f"t{t}-{i}")
                assert r.read(0, size) == bytes(size)
        return set(range(t * 8, t * 8 + 8))

    with ThreadPoolExecutor(4) as pool:
        written = set().union(*pool.map(work, range(4)))
    assert driver.changed_extents(vm.id, "disk0", base.id) == blocks_to_extents(written, BS, size)
    assert len(driver.list_snapshots(vm.id)) == 1 + 4 * 4


# ------------------------------------------------------------------ rollback
def test_rollback_restores_contents_and_config(driver: ClusterDriver) -> None:
    vm = make_vm(driver, "vm1", ("disk0", 4 * BS))
    driver.write(vm.id, "disk0", 0, data(1, 4 * BS))
    s1 = driver.create_snapshot(vm.id, "s1")
    v1 = read_all(driver, vm.id)

    cfg = vm.config.model_copy(deep=True)
    cfg.vcpu = 8
    cfg.disks = [DiskSpec(name="disk0", size_bytes=6 * BS), DiskSpec(name="extra", size_bytes=2 * BS)]
    driver.update_vm_config(vm.id, cfg)
    driver.write(vm.id, "disk0", BS // 2, data(2, 5 * BS))
    driver.write(vm.id, "extra", 0, data(3, 2 * BS))
    driver.attach_network(vm.id, "nic0", "vlan-test")
    s2 = driver.create_snapshot(vm.id, "s2")
    v2, e2 = read_all(driver, vm.id), read_all(driver, vm.id, "extra")
    driver.write(vm.id, "disk0", 0, data(4, BS))

    got = driver.rollback(vm.id, s1.id)
    assert got.config == s1.config == driver.get_vm(vm.id).config
    assert got.power_state == PowerState.STOPPED
    assert read_all(driver, vm.id) == v1
    with pytest.raises(NotFound):
        driver.open_disk(vm.id, "extra")
    # the newer snapshot is untouched, including the disk the rollback removed
    assert read_all(driver, vm.id, snap_id=s2.id) == v2
    assert read_all(driver, vm.id, "extra", snap_id=s2.id) == e2
    assert read_all(driver, vm.id, snap_id=s1.id) == v1
    # and forward again
    driver.rollback(vm.id, s2.id)
    assert driver.get_vm(vm.id).config == s2.config
    assert read_all(driver, vm.id) == v2 and read_all(driver, vm.id, "extra") == e2
    assert read_all(driver, vm.id, snap_id=s1.id) == v1


def test_rollback_of_running_vm_refused(driver: ClusterDriver) -> None:
    vm = make_vm(driver)
    s1 = driver.create_snapshot(vm.id, "s1")
    driver.write(vm.id, "disk0", 0, b"changed")
    driver.power_on(vm.id)
    with pytest.raises(InvalidState, match="RUNNING"):
        driver.rollback(vm.id, s1.id)
    assert driver.read(vm.id, "disk0", 0, 7) == b"changed"
    with pytest.raises(NotFound):
        driver.rollback(vm.id, "snap-000000000000")


# ------------------------------------------------------------------ extents
def test_changed_extents_exact(driver: ClusterDriver) -> None:
    size = 64 * BS + 8192  # a partial last block too
    vm = make_vm(driver, "vm1", ("disk0", size))
    base = driver.create_snapshot(vm.id, "base")
    assert driver.changed_extents(vm.id, "disk0", base.id) == []
    rng = __import__("random").Random(7)
    written: set[int] = set()
    with driver.open_disk(vm.id, "disk0", writable=True) as w:
        for _ in range(40):
            off = rng.randrange(size - 1)
            n = rng.randint(1, min(3 * BS, size - off))
            w.write(off, rng.randbytes(n))
            written |= blocks_of(off, n, driver.block_size)
    s2 = driver.create_snapshot(vm.id, "s2")
    want = blocks_to_extents(written, driver.block_size, size)
    assert driver.changed_extents(vm.id, "disk0", base.id, s2.id) == want
    assert driver.changed_extents(vm.id, "disk0", base.id) == want
    assert driver.changed_extents(vm.id, "disk0", s2.id) == []
    assert driver.changed_extents(vm.id, "disk0", s2.id, s2.id) == []
    assert want[-1].end <= size
    for e in want:
        assert e.offset % driver.block_size == 0
        assert e.end % driver.block_size == 0 or e.end == size
    with pytest.raises(InvalidState, match="older"):
        driver.changed_extents(vm.id, "disk0", s2.id, base.id)
    # the blocks that differ are all reported
    assert diff_blocks(read_all(driver, vm.id, snap_id=base.id), read_all(driver, vm.id, snap_id=s2.id)) \
        <= extents_to_blocks(want, driver.block_size)


def test_changed_extents_disk_added_later(driver: ClusterDriver) -> None:
    vm = make_vm(driver)
    base = driver.create_snapshot(vm.id, "base")
    cfg = vm.config.model_copy(deep=True)
    cfg.disks.append(DiskSpec(name="d2", size_bytes=BS))
    driver.update_vm_config(vm.id, cfg)
    with pytest.raises(NotFound, match="d2"):
        driver.changed_extents(vm.id, "d2", base.id)


def test_allocated_extents(driver: ClusterDriver) -> None:
    size = 32 * BS
    vm = make_vm(driver, "vm1", ("disk0", size))
    driver.write(vm.id, "disk0", 3 * BS + 5, b"abc")
    driver.write(vm.id, "disk0", 10 * BS, data(1, 2 * BS + 1))
    s1 = driver.create_snapshot(vm.id, "s1")
    alloc = extents_to_blocks(driver.allocated_extents(vm.id, "disk0", s1.id), driver.block_size)
    assert {3, 10, 11, 12} <= alloc
    assert not alloc & {0, 1, 2, 4, 20, 31}  # never written: never reported
    driver.write(vm.id, "disk0", 20 * BS, b"later")
    assert 20 in extents_to_blocks(driver.allocated_extents(vm.id, "disk0"), driver.block_size)
    # everything outside the allocated extents reads as zeros, for every view
    for snap in (s1.id, None):
        img = read_all(driver, vm.id, snap_id=snap)
        alloc = extents_to_blocks(driver.allocated_extents(vm.id, "disk0", snap), driver.block_size)
        nonzero = {i // BS for i in range(0, size, BS) if any(img[i : i + BS])}
        assert nonzero <= alloc


def test_delete_middle_snapshot_keeps_other_views(driver: ClusterDriver) -> None:
    size = 16 * BS
    vm = make_vm(driver, "vm1", ("disk0", size))
    snaps, views, written = [], [], []
    rng = __import__("random").Random(3)
    for i in range(5):
        w: set[int] = set()
        for _ in range(6):
            off, n = rng.randrange(size - 1), rng.randint(1, 2 * BS)
            n = min(n, size - off)
            driver.write(vm.id, "disk0", off, rng.randbytes(n))
            w |= blocks_of(off, n)
        written.append(w)
        snaps.append(driver.create_snapshot(vm.id, f"s{i}"))
        views.append(read_all(driver, vm.id))
    # written[i] happened before snaps[i]; delete s2 (middle), then s0 (oldest), then s4 (newest)
    for gone in (2, 0, 4):
        driver.delete_snapshot(vm.id, snaps[gone].id)
        for i, s in enumerate(snaps):
            if i not in (2, 0, 4)[: (2, 0, 4).index(gone) + 1]:
                assert read_all(driver, vm.id, snap_id=s.id) == views[i], (gone, i)
    assert driver.changed_extents(vm.id, "disk0", snaps[1].id, snaps[3].id) == \
        blocks_to_extents(written[2] | written[3], BS, size)
    assert read_all(driver, vm.id) == views[4]


def test_changed_extents_across_disk_growth(driver: ClusterDriver) -> None:
    vm = make_vm(driver, "vm1", ("disk0", 4 * BS))
    driver.write(vm.id, "disk0", 0, data(1, 4 * BS))
    base = driver.create_snapshot(vm.id, "base")
    cfg = vm.config.model_copy(deep=True)
    cfg.disks[0].size_bytes = 8 * BS
    driver.update_vm_config(vm.id, cfg)
    driver.write(vm.id, "disk0", BS, b"old area")
    driver.write(vm.id, "disk0", 6 * BS + 3, b"new area")
    s2 = driver.create_snapshot(vm.id, "s2")
    # blocks beyond the base's size count as zeros there: only block 6 of the new area changed
    assert extents_to_blocks(driver.changed_extents(vm.id, "disk0", base.id, s2.id), BS) == {1, 6}
    with driver.open_disk(vm.id, "disk0", base.id) as h:
        assert h.size == 4 * BS
    img = read_all(driver, vm.id, snap_id=s2.id)
    assert len(img) == 8 * BS and img[4 * BS : 6 * BS] == bytes(2 * BS)
    assert img[6 * BS + 3 : 6 * BS + 11] == b"new area"
