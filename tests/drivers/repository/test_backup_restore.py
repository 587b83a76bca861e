"""Backup and restore are byte-exact: full, incremental chains, resized disks, extents."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.repository import PointNotFound, PointType, Repository, RepositoryError, SyncMode
from models.inventory import Extent
from tests.drivers.repository.conftest import CS, FileDisk, KiB, MiB, backup, make_content, restore_bytes, vm_config


def test_full_backup_restores_byte_exact(repo: Repository, disks, tmp_path: Path) -> None:
    vm = vm_config(disk0=4 * MiB, disk1=1 * MiB + 12 * KiB)  # disk1 ends mid-chunk
    src = {n: disks(n, s.size_bytes, make_content(s.size_bytes, i)) for i, (n, s) in
           enumerate((d.name, d) for d in vm.disks)}
    point = backup(repo, vm, src, plan="gold", labels={"why": "test"})
    assert point.type is PointType.FULL and point.plan == "gold" and point.labels == {"why": "test"}
    assert point.vm_config == vm
    for name, d in src.items():
        assert restore_bytes(repo, point.id, name, tmp_path) == d.content()
    # The manifest round-trips through its file.
    again = repo.get_point(point.id)
    assert again.disks[0].chunks == point.disks[0].chunks
    assert [p.id for p in repo.list_points(vm="vm1")] == [point.id]


def test_incremental_chain_every_point_restores(repo: Repository, disks, tmp_path: Path) -> None:
    size = 3 * MiB
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 1))
    rng = random.Random(7)
    expected = {}
    base = backup(repo, vm, {"disk0": d})
    expected[base.id] = d.content()
    for _ in range(6):
        changed = []
        for _ in range(rng.randint(1, 5)):
            off = rng.randrange(0, size - 40 * KiB)
            ln = rng.randint(1, 40 * KiB)
            data = rng.choice([bytes(ln), rng.randbytes(ln), b"abc" * (ln // 3) + b"z" * (ln % 3)])
            changed.append(d.patch(off, data))
        d.reads.clear()
        point = backup(repo, vm, {"disk0": d}, base=base.id, changed={"disk0": changed})
        assert point.type is PointType.INCREMENTAL and point.base_point == base.id
        # Only chunks touched by the changed extents were read, whole.
        touched = {i for e in changed for i in range(e.offset // CS, (e.end - 1) // CS + 1)}
        assert sorted(o // CS for o, _ in d.reads) == sorted(touched)
        assert all(ln == CS for _, ln in d.reads)
        expected[point.id] = d.content()
        base = point
    for pid, content in expected.items():
        assert restore_bytes(repo, pid, "disk0", tmp_path) == content


def test_deleting_the_base_never_breaks_an_incremental(repo: Repository, disks, tmp_path: Path) -> None:
    size = 2 * MiB
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 2))
    full = backup(repo, vm, {"disk0": d})
    ext = d.patch(100 * KiB, b"x" * 5000)
    inc = backup(repo, vm, {"disk0": d}, base=full.id, changed={"disk0": [ext]})
    repo.delete_point(full.id)
    repo.gc(margin=-3600)  # a cutoff in the future: everything unreferenced goes now
    assert restore_bytes(repo, inc.id, "disk0", tmp_path) == d.content()
    assert repo.verify().ok


def test_allocated_extents_only_are_read_rest_is_zero(repo: Repository, disks, tmp_path: Path) -> None:
    size = 2 * MiB
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 3))  # garbage everywhere
    allocated = [Extent(offset=4 * KiB, length=8 * KiB), Extent(offset=CS + 60 * KiB, length=12 * KiB),
                 Extent(offset=1 * MiB, length=200 * KiB)]
    with repo.begin_backup(vm_id="vm1", vm_config=vm) as s:
        s.backup_disk("disk0", size, d.read_at, allocated=allocated)
        point = s.commit()
    assert sorted(d.reads) == sorted(
        [(4 * KiB, 8 * KiB), (CS + 60 * KiB, 4 * KiB), (2 * CS, 8 * KiB), (1 * MiB, CS), (1 * MiB + CS, CS),
         (1 * MiB + 2 * CS, CS), (1 * MiB + 3 * CS, 8 * KiB)]
    )
    want = bytearray(size)
    src = d.content()
    for e in allocated:
        want[e.offset : e.end] = src[e.offset : e.end]
    assert restore_bytes(repo, point.id, "disk0", tmp_path) == bytes(want)
    assert point.disks[0].stats.read_bytes == sum(e.length for e in allocated)


def test_grouped_reads_cover_the_same_bytes_and_restore_exact(repo: Repository, disks, tmp_path: Path) -> None:
    """read_bytes (the backup activity's 1 MiB): adjacent whole chunks come in one read of
    at most that size, chunks read in pieces alone; the points are the same byte for byte."""
    size = 3 * MiB + 20 * KiB  # ends mid-chunk
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 8))
    allocated = [Extent(offset=0, length=CS + 8 * KiB), Extent(offset=3 * CS + 4 * KiB, length=9 * CS),
                 Extent(offset=2 * MiB, length=size - 2 * MiB)]
    limit = 4 * CS
    with repo.begin_backup(vm_id="vm1", vm_config=vm) as s:
        s.disk_writer("disk0", size, d.read_at, allocated=allocated, read_bytes=limit).run()
        full = s.commit()
    want = bytearray(size)
    for e in allocated:
        want[e.offset : e.end] = d.content()[e.offset : e.end]
    assert restore_bytes(repo, full.id, "disk0", tmp_path) == bytes(want)
    assert sorted(d.reads)[:3] == [(0, CS), (CS, 8 * KiB), (3 * CS + 4 * KiB, CS - 4 * KiB)]
    assert all(ln <= limit and (ln % CS == 0 or ln < CS or o + ln == size) for o, ln in d.reads)
    assert sum(ln for _, ln in d.reads) == full.disks[0].stats.read_bytes == sum(e.length for e in allocated)
    assert len(d.reads) < full.disks[0].chunk_count - full.disks[0].stats.zero_chunks  # fewer reads than chunks
    changed = [d.patch(5 * CS + 3, b"q" * 9 * CS), d.patch(size - 10, b"end")]
    d.reads.clear()
    with repo.begin_backup(vm_id="vm1", vm_config=vm, base_point=full.id) as s:
        s.disk_writer("disk0", size, d.read_at, changed=changed, read_bytes=limit).run()
        inc = s.commit()
    touched = {i for e in changed for i in range(e.offset // CS, (e.end - 1) // CS + 1)}
    read = [i for o, ln in d.reads for i in range(o // CS, (o + ln - 1) // CS + 1)]
    assert sorted(read) == sorted(touched) and all(o % CS == 0 and ln <= limit for o, ln in d.reads)
    assert len(d.reads) < len(touched)
    after = bytearray(want)
    for e in changed:  # the incremental reads changed chunks whole: the rest of each is the source's
        lo, hi = e.offset // CS * CS, min(size, -(-e.end // CS) * CS)
        after[lo:hi] = d.content()[lo:hi]
    assert restore_bytes(repo, inc.id, "disk0", tmp_path) == bytes(after)


def test_resized_disk_incremental(repo: Repository, disks, tmp_path: Path) -> None:
    vm1 = vm_config(disk0=1 * MiB + 8 * KiB)
    d = disks("small", 1 * MiB + 8 * KiB, make_content(1 * MiB + 8 * KiB, 4))
    full = backup(repo, vm1, {"disk0": d})
    grown_content = d.content() + make_content(1 * MiB - 8 * KiB, 5)
    vm2 = vm_config(disk0=2 * MiB)
    g = disks("grown", 2 * MiB, grown_content)
    inc = backup(repo, vm2, {"disk0": g}, base=full.id, changed={"disk0": []})
    assert restore_bytes(repo, inc.id, "disk0", tmp_path) == grown_content
    vm3 = vm_config(disk0=512 * KiB + 4 * KiB)
    s = disks("shrunk", 512 * KiB + 4 * KiB, grown_content[: 512 * KiB + 4 * KiB])
    inc2 = backup(repo, vm3, {"disk0": s}, base=inc.id, changed={"disk0": []})
    assert restore_bytes(repo, inc2.id, "disk0", tmp_path) == grown_content[: 512 * KiB + 4 * KiB]


def test_restore_over_garbage_writes_zero_chunks(repo: Repository, disks, tmp_path: Path) -> None:
    size = 1 * MiB
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 6))
    point = backup(repo, vm, {"disk0": d})
    target = disks("target", size, b"\xff" * size)
    repo.restore_disk(point.id, "disk0", target.write_at)  # target_is_zero defaults to False
    assert target.content() == d.content()
    assert len(target.writes) == size // CS
    sparse = disks("sparse", size)
    repo.restore_disk(point.id, "disk0", sparse.write_at, target_is_zero=True)
    assert sparse.content() == d.content()
    assert len(sparse.writes) == point.disks[0].chunk_count - point.disks[0].stats.zero_chunks


def test_open_disk_random_reads(repo: Repository, disks) -> None:
    size = 1 * MiB
    vm = vm_config(disk0=size)
    d = disks("disk0", size, make_content(size, 8))
    point = backup(repo, vm, {"disk0": d})
    img = repo.open_disk(point.id, "disk0")
    src = d.content()
    rng = random.Random(1)
    for _ in range(50):
        off = rng.randrange(size)
        ln = rng.randrange(0, min(300 * KiB, size - off) + 1)
        assert img.read_at(off, ln) == src[off : off + ln]


def test_errors_are_specific(repo: Repository, disks) -> None:
    vm = vm_config(disk0=1 * MiB)
    d = disks("disk0", 1 * MiB)
    with pytest.raises(PointNotFound, match="no restore point 'nope'"):
        repo.get_point("nope")
    with pytest.raises(PointNotFound):
        repo.begin_backup(vm_id="vm1", vm_config=vm, base_point="nope")
    with repo.begin_backup(vm_id="vm1", vm_config=vm) as s:
        with pytest.raises(RepositoryError, match="no base point"):
            s.backup_disk("disk0", d.size, d.read_at, changed=[])
        with pytest.raises(KeyError, match="has no disk 'disk9'"):
            s.backup_disk("disk9", d.size, d.read_at)
        with pytest.raises(RepositoryError, match=r"disks not backed up yet: \['disk0'\]"):
            s.commit()
    with pytest.raises(ValueError, match="restore point id"):
        repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="../evil")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_property_random_writes_between_points(tmp_path_factory, data) -> None:
    """Any sequence of guest writes, backed up incrementally with exactly the written
    extents as CBT, restores every point to the disk as it was."""
    tmp = tmp_path_factory.mktemp("prop")
    repo = Repository.init(tmp / "repo", chunk_size=CS, sync=SyncMode.NONE)
    size = data.draw(st.sampled_from([256 * KiB, 512 * KiB + 4 * KiB, 1 * MiB]))
    vm = vm_config(disk0=size)
    disk = FileDisk(tmp / "d.img", size)
    try:
        expected: dict[str, bytes] = {}
        base = None
        for _ in range(data.draw(st.integers(1, 5))):
            changed = []
            for _ in range(data.draw(st.integers(0, 6))):
                off = data.draw(st.integers(0, size - 1))
                ln = data.draw(st.integers(1, min(size - off, 3 * CS)))
                kind = data.draw(st.sampled_from(["zero", "rand", "rep"]))
                seed = data.draw(st.integers(0, 2**16))
                payload = bytes(ln) if kind == "zero" else (
                    random.Random(seed).randbytes(ln) if kind == "rand" else bytes([seed % 256]) * ln)
                changed.append(disk.patch(off, payload))
            incremental = base is not None and data.draw(st.booleans())
            point = backup(repo, vm, {"disk0": disk}, base=base if incremental else None,
                           changed={"disk0": changed} if incremental else None)
            expected[point.id] = disk.content()
            base = point.id
        if data.draw(st.booleans()) and len(expected) > 1:
            victim = data.draw(st.sampled_from(sorted(expected)))
            repo.delete_point(victim)
            del expected[victim]
            repo.gc(margin=-3600)
        for pid, content in expected.items():
            assert restore_bytes(repo, pid, "disk0", tmp) == content
    finally:
        disk.close()
