"""What verify does about damage besides naming it: damaged chunks are moved aside so the next
backup stores them anew (full and incremental alike), the catalog's view is cross-checked,
the full report lives in a file a listing pages through, and verify and GC report progress
by elapsed time however slowly they run (an IOPS cap, a real parameter)."""

from __future__ import annotations

import time
from pathlib import Path

from drivers.repository import MaintenanceProgress, Repository
from drivers.repository.verify import read_findings
from tests.drivers.repository.conftest import (
    CS,
    MiB,
    backup,
    make_content,
    restore_bytes,
    vm_config,
)


def corrupt(repo: Repository, digest: bytes) -> None:
    """Flip one payload byte of a chunk file on disk."""
    path = repo.store.path(digest)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x40
    path.write_bytes(bytes(blob))


def test_a_full_backup_after_verify_rewrites_the_damaged_chunk(repo: Repository, disks, tmp_path: Path) -> None:
    size = 2 * MiB
    source = bytes(make_content(size, 41))
    d = disks("d", size, source)
    vm = vm_config(disk0=size)
    p1 = backup(repo, vm, {"disk0": d})
    victim = next(e for e in p1.disks[0].chunks if e is not None)
    corrupt(repo, victim)

    found = repo.verify()
    assert found.damaged_points == [p1.id] and found.quarantined == [victim.hex()]
    assert not repo.store.path(victim).exists()
    assert repo.store.path(victim).with_name(victim.hex() + ".bad").exists()

    p2 = backup(repo, vm, {"disk0": d})  # dedup must not trust the damaged copy
    assert p2.disks[0].stats.new_chunks >= 1
    clean = repo.verify()
    assert clean.ok, clean
    # Both points restore to the source's bytes (p1 is healed: its chunk was stored anew).
    assert restore_bytes(repo, p2.id, "disk0", tmp_path) == source
    assert restore_bytes(repo, p1.id, "disk0", tmp_path) == source


def test_an_incremental_rereads_a_damaged_chunk_it_would_carry(repo: Repository, disks, tmp_path: Path) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 42))
    vm = vm_config(disk0=size)
    p1 = backup(repo, vm, {"disk0": d})
    chunks = p1.disks[0].chunks
    k = next(i for i, e in enumerate(chunks) if e is not None and list(chunks).count(e) == 1 and i != 3)
    corrupt(repo, chunks[k])
    assert not repo.verify().ok
    ext = d.patch(3 * CS, b"\x07" * CS)  # CBT names only chunk 3: chunk k would be carried
    p2 = backup(repo, vm, {"disk0": d}, base=p1.id, changed={"disk0": [ext]})
    assert repo.verify().ok
    assert restore_bytes(repo, p2.id, "disk0", tmp_path) == d.content()


def test_verify_cross_checks_what_the_catalog_expects(repo: Repository, disks) -> None:
    size = 256 * 1024
    pts = [backup(repo, vm_config(f"vm{i}", disk0=size), {"disk0": disks(f"d{i}", size, make_content(size, i))})
           for i in range(3)]
    broken, deleted, unknown = pts
    path = repo.layout.point(broken.id)
    blob = bytearray(path.read_bytes())
    blob[0] ^= 0xFF  # first byte broken
    path.write_bytes(bytes(blob))
    repo.layout.point(deleted.id).unlink()
    report = repo.verify(expected={broken.id, deleted.id, "never-written"})
    assert list(report.unreadable_points) == [broken.id]
    assert report.missing_points == sorted([deleted.id, "never-written"])
    assert report.unknown_points == [unknown.id]
    assert report.damaged_points == sorted([broken.id, deleted.id, "never-written"]) and not report.ok
    # A manifest committed within the grace is being recorded by its backup, not unknown.
    assert repo.verify(expected={broken.id, deleted.id}, unknown_grace=600).unknown_points == []


def test_thousands_of_findings_page_from_the_report_file(repo: Repository, disks) -> None:
    size = 8 * MiB
    d = disks("d", size, make_content(size, 43))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    entries = [e for e in p.disks[0].chunks if e is not None]
    for e in set(entries[::2]):  # every other stored chunk gone: ranges cannot merge
        repo.store.path(e).unlink()
    report = repo.verify()
    assert len(report.damaged) >= 30
    summary, first = read_findings(repo, 0, 10)
    assert summary is not None and summary["damaged_ranges"] == len(report.damaged)
    assert len(first) == 10
    paged, offset = [], 0
    while page := read_findings(repo, offset, 7)[1]:
        paged += page
        offset += len(page)
    assert [(f["offset"], f["length"]) for f in paged] == [(r.offset, r.length) for r in report.damaged]


def _spy() -> tuple[list[tuple[float, MaintenanceProgress]], object]:
    seen: list[tuple[float, MaintenanceProgress]] = []
    return seen, lambda p: seen.append((time.monotonic(), p))


def test_verify_reports_by_elapsed_time_under_an_iops_cap(repo: Repository, disks) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 44))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    stored = len(p.digests())
    seen, progress = _spy()
    t0 = time.monotonic()
    # 16 I/Os per second: each stored chunk is at least one, so this takes >= stored / 16 s.
    report = repo.verify(read_iops=16, progress=progress, progress_interval=0.25, workers=2)
    elapsed = time.monotonic() - t0
    assert report.ok and report.chunks_checked == stored
    assert elapsed >= (stored - 2) / 16  # (minus the bucket's burst) the cap really held the verify back
    chunk_reports = [s for _, s in seen if s.phase == "chunks"]
    # A report per interval of elapsed time (the count is not tied to the data's size).
    assert len(chunk_reports) >= int(elapsed / 0.25) // 2
    assert [s.done for s in chunk_reports] == sorted(s.done for s in chunk_reports)
    assert all(s.total == stored and s.done <= stored for s in chunk_reports)
    assert seen[-1][1].phase == "done" and seen[-1][1].done == stored


def test_gc_reports_by_elapsed_time_under_an_iops_cap(repo: Repository, disks) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 45))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    repo.delete_point(p.id)
    seen, progress = _spy()
    t0 = time.monotonic()
    report = repo.gc(margin=-3600, iops=10, progress=progress, progress_interval=0.25)
    elapsed = time.monotonic() - t0
    assert report.swept_chunks == len(p.digests())
    assert elapsed >= (report.swept_chunks - 1) / 10  # one I/O per chunk judged, burst of 1
    sweeps = [s for _, s in seen if s.phase == "sweep"]
    assert len(sweeps) >= int(elapsed / 0.25) // 2
    assert [s.damaged for s in sweeps] == sorted(s.damaged for s in sweeps)  # swept so far, never back
    assert seen[-1][1].phase == "done" and seen[-1][1].damaged == report.swept_chunks


def test_gc_drops_the_damaged_copies_verify_set_aside(repo: Repository, disks) -> None:
    size = 1 * MiB
    p = backup(repo, vm_config(disk0=size), {"disk0": disks("d", size, make_content(size, 46))})
    victim = next(e for e in p.disks[0].chunks if e is not None)
    corrupt(repo, victim)
    assert repo.verify().quarantined == [victim.hex()]
    bad = repo.store.path(victim).with_name(victim.hex() + ".bad")
    assert repo.gc().bad_removed == 0 and bad.exists()  # younger than the margin: kept a while as evidence
    report = repo.gc(margin=-3600)
    assert report.bad_removed == 1 and not bad.exists() and report.swept_chunks == 0  # the point's chunks stay
