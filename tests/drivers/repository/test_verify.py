"""Verify re-hashes what points reference and names the damaged points and byte ranges."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.repository import ChunkProblem, CorruptChunk, Repository
from drivers.repository.chunks import HEADER
from tests.drivers.repository.conftest import CS, KiB, MiB, backup, make_content, text_bytes, vm_config


def setup_three_points(repo: Repository, disks):
    """p1, p2 (incremental of p1) share most chunks; p3 is another VM sharing none."""
    size = 2 * MiB
    d = disks("d", size, make_content(size, 31))
    vm = vm_config(disk0=size)
    p1 = backup(repo, vm, {"disk0": d})
    ext = d.patch(10 * CS, b"\x01" * CS)
    p2 = backup(repo, vm, {"disk0": d}, base=p1.id, changed={"disk0": [ext]})
    other = disks("o", size, make_content(size, 32))
    p3 = backup(repo, vm_config("other", disk0=size), {"disk0": other})
    return p1, p2, p3


def first_shared_chunk(p1, p2) -> tuple[int, bytes]:
    for i, e in enumerate(p1.disks[0].chunks):
        if e is not None and e == p2.disks[0].chunks[i]:
            return i, e
    raise AssertionError("no shared chunk")


def test_clean_repository_verifies(repo: Repository, disks) -> None:
    p1, p2, p3 = setup_three_points(repo, disks)
    report = repo.verify()
    assert report.ok and report.damaged_points == []
    assert sorted(report.points_checked) == sorted([p1.id, p2.id, p3.id])
    assert report.chunks_checked == len(p1.digests() | p2.digests() | p3.digests())


def test_flipped_byte_names_points_and_ranges(repo: Repository, disks) -> None:
    p1, p2, p3 = setup_three_points(repo, disks)
    i, digest = first_shared_chunk(p1, p2)
    path = repo.store.path(digest)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    path.write_bytes(bytes(blob))

    report = repo.verify()
    assert not report.ok
    assert report.damaged_points == sorted([p1.id, p2.id])
    assert report.damaged_chunks == {digest.hex(): report.damaged_chunks[digest.hex()]}
    assert report.damaged_chunks[digest.hex()] in (ChunkProblem.CORRUPT, ChunkProblem.UNDECOMPRESSABLE)
    for pid in (p1.id, p2.id):
        ranges = [(r.disk, r.offset, r.length) for r in report.damaged if r.point_id == pid]
        # Every chunk holding that digest, exactly (a chunk may repeat within a disk).
        want = [("disk0", j * CS, CS) for j, e in enumerate(repo.get_point(pid).disks[0].chunks) if e == digest]
        assert ranges == _merge(want)
    # Verifying a subset checks only that subset.
    only3 = repo.verify([p3.id])
    assert only3.ok and only3.points_checked == [p3.id]
    # Restoring a damaged point fails loudly, naming the chunk.
    with pytest.raises(CorruptChunk, match=digest.hex()):
        repo.restore_disk(p1.id, "disk0", lambda off, data: None)


def _merge(ranges):
    out = []
    for disk, off, ln in ranges:
        if out and out[-1][0] == disk and out[-1][1] + out[-1][2] == off:
            out[-1] = (disk, out[-1][1], out[-1][2] + ln)
        else:
            out.append((disk, off, ln))
    return out


def test_missing_and_undecompressable_chunks(repo: Repository, disks) -> None:
    size = 1 * MiB
    # Compressible text so chunks are stored zstd-compressed.
    import random

    content = b"".join(text_bytes(random.Random(k), CS) for k in range(size // CS))
    d = disks("d", size, content)
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    e3, e4, e5 = (p.disks[0].chunks[k] for k in (3, 4, 5))
    repo.store.path(e3).unlink()
    path = repo.store.path(e5)
    blob = path.read_bytes()
    path.write_bytes(blob[: HEADER.size] + b"\xde\xad" * ((len(blob) - HEADER.size) // 2) + b"\x00" * (len(blob) % 2))
    report = repo.verify()
    assert report.damaged_chunks == {e3.hex(): ChunkProblem.MISSING, e5.hex(): ChunkProblem.UNDECOMPRESSABLE}
    assert [(r.offset, r.length, r.problem) for r in report.damaged] == [
        (3 * CS, CS, ChunkProblem.MISSING), (5 * CS, CS, ChunkProblem.UNDECOMPRESSABLE)]
    assert e4.hex() not in report.damaged_chunks


def test_adjacent_damage_merges_into_one_range(repo: Repository, disks) -> None:
    size = 1 * MiB
    d = disks("d", size, make_content(size, 33))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    nonzero = [i for i, e in enumerate(p.disks[0].chunks) if e is not None]
    run = next(i for i in nonzero if i + 1 in nonzero)
    for k in (run, run + 1):
        repo.store.path(p.disks[0].chunks[k]).unlink()
    report = repo.verify()
    assert [(r.offset, r.length) for r in report.damaged] == [(run * CS, 2 * CS)]
    assert len(report.damaged[0].digests) == len({p.disks[0].chunks[run], p.disks[0].chunks[run + 1]})


def test_truncated_manifest_is_reported(repo: Repository, disks, tmp_path: Path) -> None:
    size = 256 * KiB
    d = disks("d", size, make_content(size, 34))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    mpath = repo.layout.point(p.id)
    mpath.write_bytes(mpath.read_bytes()[:100])
    report = repo.verify()
    assert list(report.unreadable_points) == [p.id] and report.damaged_points == [p.id]
