"""Local-driver specifics: the tools (import/export/rewrite_fraction), the on-disk layout's
promises (snapshots cost metadata only, zero blocks stay holes, torn tails and leftovers of
killed callers are harmless), the simulated guest and the driver factory."""

from __future__ import annotations

import os
import random
import signal
import time
import zlib
from pathlib import Path

import pytest

from drivers import get_driver
from drivers.base import AlreadyExists, DriverError, InvalidState, OperationTimeout, Unsupported, extents_to_blocks
from drivers.fsio import supports_direct
from drivers.local import LocalDriver
from drivers.local.meta import load_record, save_record
from drivers.local.tools import export_disk, import_image, rewrite_fraction
from models.inventory import Cluster, PowerState
from tests.drivers.conftest import DriverSpec
from tests.drivers.helpers import BS, data, make_vm, read_all
from tests.drivers.test_contract_processes import spawn


@pytest.fixture
def local(tmp_path: Path) -> LocalDriver:
    return LocalDriver(tmp_path / "cluster", "c1")


def make_image(path: Path, nblocks: int, seed: int, tail: int = 0) -> bytes:
    """Raw image: random, text-like and all-zero 64 KiB blocks, plus `tail` extra bytes."""
    rng = random.Random(seed)
    parts = []
    for _ in range(nblocks):
        kind = rng.choice(["zero", "zero", "random", "text"])
        parts.append(bytes(BS) if kind == "zero" else rng.randbytes(BS) if kind == "random"
                     else (b"log line %d ok\n" % rng.randrange(10**6)) * (BS // 16) + bytes(BS % 16))
    img = b"".join(parts)[: nblocks * BS] + rng.randbytes(tail)
    path.write_bytes(img)
    return img


def allocated_bytes(path: Path) -> int:
    """Space the file really uses, minus a little for the filesystem's extent tree."""
    return os.stat(path).st_blocks * 512 - 16 * 4096


def vm_dir(d: LocalDriver, vm_id: str) -> Path:
    return d.paths.vm(vm_id).dir


# ------------------------------------------------------------------ tools
def test_import_export_round_trip_is_byte_exact_and_sparse(local: LocalDriver, tmp_path: Path) -> None:
    img = make_image(tmp_path / "in.raw", 64, seed=1)
    zero_blocks = {i for i in range(64) if img[i * BS : (i + 1) * BS] == bytes(BS)}
    assert 8 < len(zero_blocks) < 56
    vm = import_image(local, tmp_path / "in.raw", "imported")
    assert vm.config.disks[0].size_bytes == len(img) and vm.power_state == PowerState.STOPPED
    assert read_all(local, vm.id) == img
    # zero blocks were never written: holes, and not in the allocated extents
    alloc = extents_to_blocks(local.allocated_extents(vm.id, "disk0"), BS)
    assert alloc == set(range(64)) - zero_blocks
    live = vm_dir(local, vm.id) / "disks" / "disk0.raw"
    assert allocated_bytes(live) <= (64 - len(zero_blocks)) * BS

    export_disk(local, vm.id, "disk0", tmp_path / "out.raw")
    assert (tmp_path / "out.raw").read_bytes() == img
    assert allocated_bytes(tmp_path / "out.raw") <= (64 - len(zero_blocks)) * BS


def test_import_rounds_odd_sizes_and_checks_config(local: LocalDriver, tmp_path: Path) -> None:
    img = make_image(tmp_path / "odd.raw", 3, seed=2, tail=1000)
    vm = import_image(local, tmp_path / "odd.raw", "odd")
    size = vm.config.disks[0].size_bytes
    assert size % 4096 == 0 and size == 3 * BS + 4096
    assert read_all(local, vm.id) == img + bytes(size - len(img))
    small = make_vm(local, "small", ("disk0", BS))
    with pytest.raises(DriverError, match="does not fit"):
        import_image(local, tmp_path / "odd.raw", small.config.model_copy(update={"name": "other"}))
    assert local.find_vm("other") is None


def test_export_of_a_snapshot(local: LocalDriver, tmp_path: Path) -> None:
    img = make_image(tmp_path / "in.raw", 32, seed=3)
    vm = import_image(local, tmp_path / "in.raw", "vm")
    s1 = local.create_snapshot(vm.id, "s1")
    rewrite_fraction(local, vm.id, "disk0", 0.25, seed=9)
    export_disk(local, vm.id, "disk0", tmp_path / "snap.raw", s1.id)
    assert (tmp_path / "snap.raw").read_bytes() == img
    export_disk(local, vm.id, "disk0", tmp_path / "live.raw")
    assert (tmp_path / "live.raw").read_bytes() == read_all(local, vm.id) != img


def test_rewrite_fraction_is_deterministic_and_tracked(local: LocalDriver, tmp_path: Path) -> None:
    make_image(tmp_path / "in.raw", 200, seed=4)
    a = import_image(local, tmp_path / "in.raw", "a")
    b = import_image(local, tmp_path / "in.raw", "b")
    sa, sb = local.create_snapshot(a.id, "base"), local.create_snapshot(b.id, "base")
    ea = rewrite_fraction(local, a.id, "disk0", 0.05, seed=2)
    eb = rewrite_fraction(local, b.id, "disk0", 0.05, seed=2)
    assert ea == eb and read_all(local, a.id) == read_all(local, b.id)
    blocks = extents_to_blocks(ea, BS)
    assert len(blocks) == 10  # round(0.05 * 200), scattered
    assert local.changed_extents(a.id, "disk0", sa.id) == ea == local.changed_extents(b.id, "disk0", sb.id)
    # half random (incompressible), half text (compressible), as in make_image.py mutate
    live = read_all(local, a.id)
    ratios = [len(zlib.compress(live[x * BS : (x + 1) * BS])) / BS for x in blocks]
    assert any(r < 0.5 for r in ratios) and any(r > 0.95 for r in ratios)
    assert rewrite_fraction(local, a.id, "disk0", 0.05, seed=3) != ea


# ------------------------------------------------------------------ layout promises
def test_snapshot_costs_metadata_only(local: LocalDriver) -> None:
    vm = make_vm(local, "vm", ("disk0", 64 * BS))
    local.write(vm.id, "disk0", 0, data(1, 64 * BS))
    s1 = local.create_snapshot(vm.id, "s1")
    snap_dir = vm_dir(local, vm.id) / "snaps" / s1.id
    assert sum(f.stat().st_size for f in snap_dir.iterdir()) == 0
    local.write(vm.id, "disk0", 5 * BS + 7, b"one byte... well, eleven")
    assert (snap_dir / "disk0.undo").stat().st_size == BS  # exactly the one block preserved
    assert (snap_dir / "disk0.idx").stat().st_size == 16
    local.write(vm.id, "disk0", 5 * BS, b"again")  # already preserved: no more copies
    assert (snap_dir / "disk0.undo").stat().st_size == BS


def test_zero_blocks_are_preserved_without_data(local: LocalDriver) -> None:
    vm = make_vm(local, "vm", ("disk0", 64 * BS))
    s1 = local.create_snapshot(vm.id, "s1")
    local.write(vm.id, "disk0", 0, data(1, 10 * BS))  # over holes
    snap_dir = vm_dir(local, vm.id) / "snaps" / s1.id
    assert (snap_dir / "disk0.undo").stat().st_size == 0
    assert (snap_dir / "disk0.idx").stat().st_size == 10 * 16
    assert read_all(local, vm.id, snap_id=s1.id) == bytes(64 * BS)
    assert len(local.changed_extents(vm.id, "disk0", s1.id)) == 1


def test_torn_index_tail_is_ignored_then_overwritten(local: LocalDriver) -> None:
    vm = make_vm(local, "vm", ("disk0", 8 * BS))
    local.write(vm.id, "disk0", 0, data(1, 8 * BS))
    s1 = local.create_snapshot(vm.id, "s1")
    local.write(vm.id, "disk0", 0, data(2, BS))
    idx = vm_dir(local, vm.id) / "snaps" / s1.id / "disk0.idx"
    with open(idx, "ab") as f:  # what a power cut mid-append may leave
        f.write(os.urandom(16) + b"\x00" * 16 + b"\x01\x02\x03")
    assert read_all(local, vm.id, snap_id=s1.id) == data(1, 8 * BS)
    assert local.changed_extents(vm.id, "disk0", s1.id)[0].length == BS
    local.write(vm.id, "disk0", 3 * BS, data(3, BS))
    assert idx.stat().st_size == 2 * 16
    expected = data(1, 8 * BS)
    assert read_all(LocalDriver(local.paths.root), vm.id, snap_id=s1.id) == expected


def test_leftovers_of_killed_callers_are_cleaned(local: LocalDriver) -> None:
    vm = make_vm(local, "vm")
    d = vm_dir(local, vm.id)
    (d / "snaps" / "snap-0123456789ab").mkdir()  # created, never committed
    (d / ".vm.json.123.456.tmp").write_text("{")
    (local.paths.tmp / "vm-0123456789ab").mkdir()  # staged VM, never renamed in
    local.power_on(vm.id)
    assert not (d / "snaps" / "snap-0123456789ab").exists()
    assert not (d / ".vm.json.123.456.tmp").exists()
    make_vm(local, "vm2")
    assert list(local.paths.tmp.iterdir()) == []
    assert [v.name for v in local.list_vms()] == ["vm", "vm2"]


def test_interrupted_rollback_blocks_power_on_until_redone(local: LocalDriver) -> None:
    vm = make_vm(local, "vm", ("disk0", 4 * BS))
    local.write(vm.id, "disk0", 0, data(1, 4 * BS))
    s1 = local.create_snapshot(vm.id, "s1")
    local.write(vm.id, "disk0", 0, data(2, 2 * BS))
    meta = vm_dir(local, vm.id) / "vm.json"
    rec = load_record(meta)
    rec.pending_rollback = s1.id  # the state a kill mid-rollback leaves
    save_record(meta, rec)
    with pytest.raises(InvalidState, match="unfinished rollback"):
        local.power_on(vm.id)
    with pytest.raises(InvalidState, match="unfinished rollback"):
        local.create_snapshot(vm.id, "s2")
    local.rollback(vm.id, s1.id)
    assert read_all(local, vm.id) == data(1, 4 * BS)
    assert local.power_on(vm.id).power_state == PowerState.RUNNING


def test_sigkill_during_rollback(local: LocalDriver, tmp_path: Path) -> None:
    size = 256 * BS
    spec_json = DriverSpec("local", str(local.paths.root)).to_json()
    for round_ in range(3):
        vm = make_vm(local, f"vm{round_}", ("disk0", size))
        local.write(vm.id, "disk0", 0, data(1, size))
        s1 = local.create_snapshot(vm.id, "s1")
        local.write(vm.id, "disk0", 0, data(2, size))
        s2 = local.create_snapshot(vm.id, "s2")
        p = spawn("rollback", spec_json, vm.id, s1.id)
        assert p.stdout is not None and p.stdout.readline() == "started\n"
        time.sleep((0.005, 0.03, 0.5)[round_])  # inside the rollback, or (last round) after it
        os.kill(p.pid, signal.SIGKILL)
        p.communicate()
        # whatever the moment of the kill: the snapshots are intact and a redo finishes the job
        assert read_all(local, vm.id, snap_id=s2.id) == data(2, size)
        assert read_all(local, vm.id, snap_id=s1.id) == data(1, size)
        local.rollback(vm.id, s1.id)
        assert read_all(local, vm.id) == data(1, size)
        assert read_all(local, vm.id, snap_id=s2.id) == data(2, size)


# ------------------------------------------------------------------ guest, factory
def test_guest_that_refuses_shutdown(local: LocalDriver) -> None:
    vm = make_vm(local, "stubborn")
    local.power_on(vm.id)
    local.set_guest_behavior(vm.id, refuse_shutdown=True)
    with pytest.raises(OperationTimeout, match="stubborn.*did not shut down within 30s"):
        local.shutdown(vm.id, timeout_s=30)
    assert local.get_vm(vm.id).power_state == PowerState.RUNNING
    assert local.power_off(vm.id).power_state == PowerState.STOPPED


def test_ids_and_block_size(local: LocalDriver) -> None:
    vm = make_vm(local, "vm")
    s = local.create_snapshot(vm.id, "s")
    assert local.block_size == 64 * 1024
    assert vm.id.startswith("vm-") and len(vm.id) == 15
    assert s.id.startswith("snap-") and len(s.id) == 17


def test_cluster_directory_identity(tmp_path: Path) -> None:
    LocalDriver(tmp_path / "c", "east")
    assert LocalDriver(tmp_path / "c").cluster == "east"
    with pytest.raises(DriverError, match="'east', not 'west'"):
        LocalDriver(tmp_path / "c", "west")


def test_get_driver(tmp_path: Path) -> None:
    d = get_driver(Cluster(name="east", site="s1", endpoint=str(tmp_path / "east")))
    assert isinstance(d, LocalDriver) and d.cluster == "east"
    assert d.paths.root == tmp_path / "east"
    with pytest.raises(DriverError, match="'west' has no endpoint"):
        get_driver(Cluster(name="west", site="s1"))
    with pytest.raises(Unsupported, match="'vmware'.*not implemented"):
        get_driver(Cluster.model_construct(name="x", site="s1", driver="vmware", endpoint=""))
    with pytest.raises(DriverError, match="is not https://HOST"):  # aoc is implemented: its endpoint is checked
        get_driver(Cluster(name="x", site="s1", driver="aoc"))


# ------------------------------------------------------------------ the name index

def test_a_cluster_from_before_the_name_index_is_found_by_name_and_keeps_names_unique(tmp_path: Path) -> None:
    """A cluster made before names/ existed: lookups scan until a writer fills the index,
    and a create then still refuses a taken name."""
    d = LocalDriver(tmp_path / "cluster", "c1")
    vms = [make_vm(d, f"vm{i}") for i in range(5)]
    for p in (d.paths.root / "names").iterdir():
        p.unlink()
    (d.paths.root / "names").rmdir()  # as an older abdr left it
    d = LocalDriver(tmp_path / "cluster", "c1")
    assert d.find_vm("vm3").id == vms[3].id and d.find_vm("nope") is None
    with pytest.raises(AlreadyExists, match="already has a VM named 'vm2'"):
        make_vm(d, "vm2")
    assert d.names.complete()
    assert {d.find_vm(f"vm{i}").id for i in range(5)} == {v.id for v in vms}


def test_stale_and_dangling_name_entries_read_as_absent(local: LocalDriver) -> None:
    """An entry is a hint checked against the record it names: a rename leaves none for the
    old name, a crash between the entry and the VM (here: a link to no VM) hides nothing."""
    a = make_vm(local, "a")
    os.symlink("vm-000000000000", local.paths.root / "names" / "ghost")  # a create killed before its rename
    assert local.find_vm("ghost") is None
    assert make_vm(local, "ghost").id != "vm-000000000000"
    local.update_vm_config(a.id, local.get_vm(a.id).config.model_copy(update={"name": "b"}))
    assert local.find_vm("a") is None and local.find_vm("b").id == a.id
    assert make_vm(local, "a").id != a.id  # the old name is free again
    local.delete_vm(a.id)
    assert local.find_vm("b") is None
    assert make_vm(local, "b").id != a.id


def test_bulk_writes_go_around_the_page_cache_and_snapshots_stay_frozen(local: LocalDriver) -> None:
    """A restore's and a pull's writes (aligned runs of 64 KiB and more) take the BulkWriter's
    direct path where the file system allows it; a snapshot taken before them still reads
    what it held, the live disk what was written, byte for byte."""
    vm = make_vm(local, "vm", ("disk0", 64 * BS))
    before = data(1, 64 * BS)
    local.write(vm.id, "disk0", 0, before)
    s1 = local.create_snapshot(vm.id, "s1")
    after = data(2, 32 * BS)
    with local.open_disk(vm.id, "disk0", writable=True) as h:
        h.write_many([(8 * BS + i * BS, after[i * BS : (i + 1) * BS]) for i in range(32)])
        h.flush()
        live_file = vm_dir(local, vm.id) / "disks" / "disk0.raw"
        if supports_direct(live_file):
            chain = h._chain  # the handle's chain: its BulkWriter counts what went around the cache
            assert chain is not None and chain.bulk is not None and chain.bulk.direct_bytes == 32 * BS
    assert read_all(local, vm.id, snap_id=s1.id) == before
    assert read_all(local, vm.id) == before[: 8 * BS] + after + before[40 * BS :]
