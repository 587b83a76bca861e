"""Restore: in place over a disk whose content is known writes only differing chunks; restores
resume from their progress index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drivers.repository import Repository
from tests.drivers.repository.conftest import CS, KiB, MiB, backup, make_content, vm_config


def test_in_place_restore_writes_only_differing_chunks(repo: Repository, disks) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 70))
    vm = vm_config(disk0=size)
    old = backup(repo, vm, {"disk0": d})
    old_content = d.content()
    changed = [d.patch(3 * CS + 10, os.urandom(100)), d.patch(9 * CS, os.urandom(2 * CS)),
               d.patch(20 * CS, bytes(CS))]  # one chunk zeroed
    new = backup(repo, vm, {"disk0": d}, base=old.id, changed={"disk0": changed})
    new_content = d.content()

    # The VM's disk is at the old point; roll it forward in place.
    target = disks("target", size, old_content)
    repo.restore_disk(new.id, "disk0", target.write_at, current_point=old.id)
    assert target.content() == new_content
    differing = [i for i in range(size // CS) if old.disks[0].chunks.entry(i) != new.disks[0].chunks.entry(i)]
    assert sorted(off // CS for off, _ in target.writes) == differing
    assert differing == [3, 9, 10, 20]  # the zeroed chunk is written (as zeros) too

    # And back again, with a cheap zeroing callable for zero chunks.
    zeroed: list[tuple[int, int]] = []

    def write_zeroes(off: int, ln: int) -> None:
        zeroed.append((off, ln))
        target.write_at(off, bytes(ln))

    target.writes.clear()
    repo.restore_disk(old.id, "disk0", target.write_at, current_point=new.id, write_zeroes=write_zeroes)
    assert target.content() == old_content
    assert sorted(off // CS for off, _ in target.writes) == differing
    assert zeroed == [] or all(old.disks[0].chunks[off // CS] is None for off, _ in zeroed)


def test_restore_resumes_from_progress_index(repo: Repository, disks) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 71) + b"")
    point = backup(repo, vm_config(disk0=size), {"disk0": d})
    target = disks("t", size)
    beats = []

    def failing_write(off: int, data: bytes) -> None:
        if off >= 17 * CS:
            raise OSError("target went away")
        target.write_at(off, data)

    with pytest.raises(OSError, match="target went away"):
        repo.restore_disk(point.id, "disk0", failing_write, on_progress=beats.append, progress_bytes=CS)
    resume = beats[-1].chunk_index
    assert resume == 17  # every chunk before it was written, in order
    target.writes.clear()
    done = repo.restore_disk(point.id, "disk0", target.write_at, resume_from=resume)
    assert done.done and done.chunk_index == size // CS
    assert min(off for off, _ in target.writes) >= resume * CS
    assert target.content() == d.content()


def test_in_place_restore_with_unknown_chunks(repo: Repository, disks) -> None:
    """Chunks of the current disk that changed since its known point (CBT) are marked unknown
    and therefore always written."""
    from drivers.repository import ChunkTable

    size = 1 * MiB
    d = disks("d", size, make_content(size, 72))
    point = backup(repo, vm_config(disk0=size), {"disk0": d})
    target = disks("t", size, d.content())
    target.patch(5 * CS, os.urandom(KiB))  # the live disk drifted
    table = bytearray(point.disks[0].chunks.packed)
    table[5 * 32 : 6 * 32] = b"\xff" * 32
    current = point.disks[0].model_copy(update={"chunks": ChunkTable(bytes(table))})
    r = repo.restorer(point.id, "disk0", target.write_at)
    r.current = current
    r.run()
    assert target.writes == [(5 * CS, CS)]
    assert target.content() == d.content()


def test_restore_to_new_disk_bigger_than_point_and_missing_disk(repo: Repository, disks, tmp_path: Path) -> None:
    size = 256 * KiB
    d = disks("d", size, make_content(size, 73))
    point = backup(repo, vm_config(disk0=size), {"disk0": d})
    from drivers.repository import PointNotFound

    with pytest.raises(PointNotFound, match="has no disk 'disk7'"):
        repo.restore_disk(point.id, "disk7", lambda o, b: None)
