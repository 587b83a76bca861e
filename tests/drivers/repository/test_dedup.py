"""Dedup across disks, VMs and points, and zero-chunk elision, seen in what is stored."""

from __future__ import annotations

import os
import random
from pathlib import Path

from drivers.repository import Repository
from drivers.repository.chunks import FLAG_ZSTD, HEADER
from tests.drivers.repository.conftest import CS, KiB, MiB, backup, make_content, text_bytes, vm_config


def chunk_files(repo: Repository) -> dict[str, int]:
    return {e.name: e.stat().st_size for e in repo.store.iter_files() if not e.name.startswith(".")}


def test_all_zero_disk_stores_nothing(repo: Repository, disks) -> None:
    vm = vm_config(disk0=8 * MiB)
    point = backup(repo, vm, {"disk0": disks("disk0", 8 * MiB)})
    assert chunk_files(repo) == {}
    dm = point.disks[0]
    assert dm.stats.zero_chunks == dm.chunk_count == 8 * MiB // CS
    assert all(e is None for e in dm.chunks)
    assert repo.stats().stored_bytes == 0


def test_dedup_across_disks_vms_and_points(repo: Repository, disks) -> None:
    size = 2 * MiB
    content = make_content(size, 11)
    a = disks("a", size, content)
    b = disks("b", size, content)  # second disk of the same VM: identical
    vm = vm_config("web", disk0=size, disk1=size)
    p1 = backup(repo, vm, {"disk0": a, "disk1": b})
    stored = chunk_files(repo)
    distinct = {e for d in p1.disks for e in d.chunks if e is not None}
    assert len(stored) == len(distinct)
    assert p1.disks[1].stats.new_chunks == 0  # disk1 found every chunk already stored
    # Another VM with the same image (a clone), and a second full backup: nothing new.
    c = disks("c", size, content)
    p2 = backup(repo, vm_config("clone", disk0=size), {"disk0": c})
    p3 = backup(repo, vm, {"disk0": a, "disk1": b})
    assert chunk_files(repo) == stored
    assert p2.new_bytes == 0 and p3.new_bytes == 0
    assert p3.disks[0].stats.reused_chunks == sum(1 for e in p3.disks[0].chunks if e is not None)
    st = repo.stats()
    assert st.logical_bytes == 5 * size
    assert st.stored_bytes == sum(stored.values())
    assert st.reduction_ratio > 5  # 5 logical copies + zeros + compression


def test_repeated_chunks_within_a_disk_are_stored_once(repo: Repository, disks) -> None:
    block = random.Random(1).randbytes(CS)
    size = 32 * CS
    d = disks("disk0", size, block * 32)
    point = backup(repo, vm_config(disk0=size), {"disk0": d})
    assert len(chunk_files(repo)) == 1
    assert len(point.disks[0].chunks.digests()) == 1


def test_compressible_compressed_incompressible_raw(repo: Repository, disks) -> None:
    rng = random.Random(2)
    text, noise = text_bytes(rng, CS), rng.randbytes(CS)
    d = disks("disk0", 2 * CS, text + noise)
    point = backup(repo, vm_config(disk0=2 * CS), {"disk0": d})
    e_text, e_noise = point.disks[0].chunks[0], point.disks[0].chunks[1]
    raw_text = repo.store.path(e_text).read_bytes()
    raw_noise = repo.store.path(e_noise).read_bytes()
    _, _, flags_t, _, rawlen_t, plen_t = HEADER.unpack_from(raw_text)
    _, _, flags_n, _, rawlen_n, plen_n = HEADER.unpack_from(raw_noise)
    assert flags_t & FLAG_ZSTD and plen_t < CS // 3 and rawlen_t == CS
    assert not flags_n & FLAG_ZSTD and plen_n == CS and raw_noise[HEADER.size :] == noise


def test_chunks_are_written_once_and_never_rewritten(repo: Repository, disks, tmp_path: Path) -> None:
    size = 1 * MiB
    d = disks("disk0", size, make_content(size, 12))
    vm = vm_config(disk0=size)
    backup(repo, vm, {"disk0": d})
    inodes = {e.name: e.inode() for e in repo.store.iter_files()}
    backup(repo, vm, {"disk0": d})
    assert {e.name: e.inode() for e in repo.store.iter_files()} == inodes
    # No temporaries left behind.
    assert not [e for e in repo.store.iter_files() if e.name.startswith(".")]
    assert os.listdir(repo.layout.staging) == [] and os.listdir(repo.layout.leases) == []


def test_incremental_stores_only_changed_chunks(repo: Repository, disks) -> None:
    size = 4 * MiB
    d = disks("disk0", size, make_content(size, 13))
    vm = vm_config(disk0=size)
    full = backup(repo, vm, {"disk0": d})
    before = repo.stats().stored_bytes
    rng = random.Random(3)
    changed = [d.patch(off, rng.randbytes(4 * KiB)) for off in (0, 5 * CS + 100, 40 * CS)]
    inc = backup(repo, vm, {"disk0": d}, base=full.id, changed={"disk0": changed})
    s = inc.disks[0].stats
    assert s.new_chunks == 3 and s.read_bytes == 3 * CS
    assert s.carried_chunks == size // CS - 3
    assert repo.stats().stored_bytes - before == inc.new_bytes
    assert inc.new_bytes < 3 * (CS + HEADER.size) + 1
