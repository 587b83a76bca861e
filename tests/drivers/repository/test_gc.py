"""Prune + GC never remove a chunk a point needs, including while a backup runs and dedups
against the very chunks GC is collecting (real threads, interleaved at the dangerous moments
through GC's hooks)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.repository import GCHooks, PointBusy, PointCreation, Repository, RepositoryError
from models.retention import Retention
from tests.drivers.repository.conftest import CS, FileDisk, KiB, MiB, backup, make_content, restore_bytes, vm_config

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def chunk_names(repo: Repository) -> set[str]:
    return {e.name for e in repo.store.iter_files() if not e.name.startswith(".")}


def age_chunks(repo: Repository, seconds: float = 10_000) -> None:
    """Make every chunk file look old (as after days in the repository)."""
    t = time.time() - seconds
    for e in repo.store.iter_files():
        os.utime(e.path, (t, t))


def referenced(repo: Repository) -> set[str]:
    out: set[str] = set()
    for p in repo.list_points():
        out |= {d.hex() for d in p.digests()}
    return out


def test_prune_then_gc_keeps_exactly_what_live_points_need(repo: Repository, disks, tmp_path: Path) -> None:
    size = 2 * MiB
    d = disks("d", size, make_content(size, 41))
    vm = vm_config(disk0=size)
    expected: dict[str, bytes] = {}
    base = None
    for k in range(7):
        # Same chunks rewritten each time: older versions become garbage once pruned.
        changed = [d.patch(5 * CS + 512, os.urandom(20 * KiB)), d.patch(k * 3 * CS, os.urandom(CS))]
        creation = PointCreation.MANUAL if k == 1 else PointCreation.AUTO
        p = backup(repo, vm, {"disk0": d}, base=base, changed={"disk0": changed} if base else None,
                   created_at=T0 + timedelta(hours=k), creation=creation)
        expected[p.id] = d.content()
        base = p.id
    ids = list(expected)
    report = repo.prune(Retention.count(2), T0 + timedelta(days=1), plan=None, vm="vm1")
    # The manual point stays; of the 6 automatic ones the newest 2 stay.
    assert report.deleted == [ids[0], ids[2], ids[3], ids[4]]
    live = {ids[1], ids[5], ids[6]}
    assert {p.id for p in repo.list_points()} == live

    before = chunk_names(repo)
    age_chunks(repo)
    gc = repo.gc(margin=0)
    assert chunk_names(repo) == referenced(repo)  # nothing needed lost, nothing unneeded left
    assert gc.swept_chunks == len(before - chunk_names(repo)) > 0
    for pid in live:
        assert restore_bytes(repo, pid, "disk0", tmp_path) == expected[pid]
    assert repo.verify().ok


def test_gc_spares_young_garbage_and_removes_it_later(repo: Repository, disks) -> None:
    size = 512 * KiB
    d = disks("d", size, make_content(size, 42))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    repo.delete_point(p.id)
    stray = repo.store.path(b"\x11" * 32).with_name(".leftover.123.ab.tmp")
    stray.write_bytes(b"partial")
    n = len(chunk_names(repo))
    r1 = repo.gc()  # default margin: an hour
    assert r1.swept_chunks == 0 and r1.kept_young == n and stray.exists()
    age_chunks(repo)
    os.utime(stray, (time.time() - 10_000,) * 2)
    r2 = repo.gc(margin=0)
    assert r2.swept_chunks == n and r2.tmp_removed == 1 and chunk_names(repo) == set()
    assert r2.swept_bytes > 0


def _old_garbage(repo: Repository, disks, size: int, seed: int) -> FileDisk:
    """Back up a disk, delete the point, age its chunks: garbage a GC may collect."""
    d = disks(f"g{seed}", size, make_content(size, seed))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    repo.delete_point(p.id)
    age_chunks(repo)
    return d


class PausedBackup(threading.Thread):
    """A backup in a real thread, stopped inside read_at at chunk `pause_at` until released,
    and stopped again before commit until `commit` is set."""

    def __init__(self, repo: Repository, disk: FileDisk, pause_at: int | None = 0) -> None:
        super().__init__(daemon=True)
        self.repo, self.disk, self.pause_at = repo, disk, pause_at
        self.paused, self.release = threading.Event(), threading.Event()
        self.disk_done, self.commit = threading.Event(), threading.Event()
        self.leased = threading.Event()
        self.point = None
        self.error: BaseException | None = None

    def read_at(self, off: int, n: int) -> bytes:
        if self.pause_at is not None and off == self.pause_at * CS:
            self.paused.set()
            assert self.release.wait(30)
        return self.disk.read_at(off, n)

    def run(self) -> None:
        try:
            vm = vm_config(disk0=self.disk.size)
            with self.repo.begin_backup(vm_id="vm-b", vm_config=vm) as s:
                self.leased.set()
                s.backup_disk("disk0", self.disk.size, self.read_at, workers=2)
                self.disk_done.set()
                assert self.commit.wait(30)
                self.point = s.commit()
        except BaseException as e:  # noqa: BLE001
            self.error = e
            self.paused.set()
            self.disk_done.set()


def test_backup_dedups_against_chunk_gc_is_about_to_remove(repo: Repository, disks, tmp_path: Path) -> None:
    """Backup leased before GC; GC selects an old unreferenced chunk; before GC moves it, the
    backup dedups against it (refreshing its mtime). GC must notice and put it back."""
    size = 1 * MiB
    src = _old_garbage(repo, disks, size, 43)
    b = PausedBackup(repo, src, pause_at=0)
    b.start()
    assert b.paused.wait(30)

    def let_backup_dedup(path: Path) -> None:
        if not b.release.is_set():
            b.release.set()
            assert b.disk_done.wait(30)  # every chunk of the disk looked up (and touched)

    report = repo.gc(margin=0, hooks=GCHooks(before_condemn=let_backup_dedup))
    b.commit.set()
    b.join(30)
    assert b.error is None, b.error
    assert report.rescued >= 1 and report.swept_chunks == 0
    assert b.point.disks[0].stats.new_chunks == 0  # it really deduped against the old chunks
    assert restore_bytes(repo, b.point.id, "disk0", tmp_path) == src.content()
    assert repo.verify().ok


def test_backup_finds_chunk_while_gc_holds_it_in_trash(repo: Repository, disks, tmp_path: Path) -> None:
    """GC has moved an old chunk aside when the backup looks it up: the backup sees it absent
    and writes it again; GC then deletes only its trash copy."""
    size = 1 * MiB
    src = _old_garbage(repo, disks, size, 44)
    b = PausedBackup(repo, src, pause_at=0)
    b.start()
    assert b.paused.wait(30)
    first: list[Path] = []

    def backup_runs_now(trash: Path) -> None:
        if not first:
            first.append(trash)
            b.release.set()
            assert b.disk_done.wait(30)
            b.commit.set()  # even committing while GC is mid-sweep
            b.join(30)

    report = repo.gc(margin=0, hooks=GCHooks(after_condemn=backup_runs_now))
    assert b.error is None, b.error
    assert first and not first[0].exists()
    assert b.point.disks[0].stats.new_chunks >= 1  # the trashed chunk was written anew
    assert report.swept_chunks >= 1
    assert restore_bytes(repo, b.point.id, "disk0", tmp_path) == src.content()
    assert repo.verify().ok


def test_backup_started_during_gc(repo: Repository, disks, tmp_path: Path) -> None:
    """GC read the (empty) lease list before the backup began; the backup's lookups still
    refresh the chunks before GC moves them."""
    size = 512 * KiB
    src = _old_garbage(repo, disks, size, 45)
    b = PausedBackup(repo, src, pause_at=None)

    def start_backup(path: Path) -> None:
        if not b.is_alive() and b.point is None:
            b.start()
            assert b.disk_done.wait(30)

    report = repo.gc(margin=0, hooks=GCHooks(before_condemn=start_backup))
    b.commit.set()
    b.join(30)
    assert b.error is None, b.error
    assert report.live_leases == 0 and report.rescued >= 1
    assert restore_bytes(repo, b.point.id, "disk0", tmp_path) == src.content()
    assert repo.verify().ok


def test_gc_while_backup_paused_midway(repo: Repository, disks, tmp_path: Path) -> None:
    """No hooks: a full GC runs while the backup sits between two chunk lookups."""
    size = 1 * MiB
    src = _old_garbage(repo, disks, size, 46)
    b = PausedBackup(repo, src, pause_at=8)
    b.start()
    assert b.paused.wait(30)
    report = repo.gc(margin=0)
    assert report.live_leases == 1
    b.release.set()
    assert b.disk_done.wait(30)
    b.commit.set()
    b.join(30)
    assert b.error is None, b.error
    assert restore_bytes(repo, b.point.id, "disk0", tmp_path) == src.content()
    age_chunks(repo)
    repo.gc(margin=0)
    assert restore_bytes(repo, b.point.id, "disk0", tmp_path) == src.content()
    assert chunk_names(repo) == referenced(repo)


def test_base_of_running_incremental_cannot_be_pruned(repo: Repository, disks, tmp_path: Path) -> None:
    size = 1 * MiB
    d = disks("d", size, make_content(size, 47))
    vm = vm_config(disk0=size)
    p0 = backup(repo, vm, {"disk0": d}, created_at=T0)
    ext = d.patch(3 * CS, b"\x07" * 100)
    paused = threading.Event()
    go = threading.Event()
    result = {}

    def run() -> None:
        def read_at(off: int, n: int) -> bytes:
            paused.set()
            assert go.wait(30)
            return d.read_at(off, n)

        with repo.begin_backup(vm_id="vm1", vm_config=vm, base_point=p0.id, created_at=T0 + timedelta(days=9)) as s:
            s.backup_disk("disk0", size, read_at, changed=[ext])
            result["point"] = s.commit()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert paused.wait(30)
    with pytest.raises(PointBusy, match=f"{p0.id} is the base of running backup"):
        repo.delete_point(p0.id)
    report = repo.prune(Retention.days(1), T0 + timedelta(days=10))
    assert report.busy == [p0.id] and report.deleted == []
    age_chunks(repo)
    repo.gc(margin=0)
    go.set()
    t.join(30)
    p1 = result["point"]
    assert repo.prune(Retention.count(1), T0 + timedelta(days=10)).deleted == [p0.id]
    age_chunks(repo)
    repo.gc(margin=0)
    assert restore_bytes(repo, p1.id, "disk0", tmp_path) == d.content()
    assert chunk_names(repo) == referenced(repo)


def test_crashed_gc_trash_is_readable_and_recovered(repo: Repository, disks, tmp_path: Path) -> None:
    size = 256 * KiB
    size += CS
    d = disks("d", size, make_content(size - CS, 48) + os.urandom(CS))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    digest = next(e for e in p.disks[0].chunks if e is not None)
    path = repo.store.path(digest)
    os.rename(path, path.with_name(f".trash.{path.name}.999"))  # what a GC killed mid-sweep leaves
    assert restore_bytes(repo, p.id, "disk0", tmp_path) == d.content()
    report = repo.gc(margin=0)
    assert report.trash_recovered == 1 and path.exists()
    assert repo.verify().ok


def test_lapsed_lease_rechecks_and_repairs_before_commit(repo: Repository, disks, tmp_path: Path) -> None:
    size = 512 * KiB
    size += CS
    d = disks("d", size, make_content(size - CS, 49) + os.urandom(CS))
    with repo.begin_backup(vm_id="vm1", vm_config=vm_config(disk0=size)) as s:
        dm = s.backup_disk("disk0", size, d.read_at)
        victim = next(e for e in dm.chunks if e is not None)
        repo.store.path(victim).unlink()  # as a GC would, had it missed our frozen lease
        s.lease.lapsed = True  # the refresher's verdict after a freeze (cannot wait 7 minutes)
        point = s.commit()
    assert repo.store.path(victim).exists()
    assert restore_bytes(repo, point.id, "disk0", tmp_path) == d.content()


def test_gc_refuses_when_a_manifest_is_unreadable(repo: Repository, disks) -> None:
    size = 256 * KiB
    size += CS
    d = disks("d", size, make_content(size - CS, 50) + os.urandom(CS))
    p = backup(repo, vm_config(disk0=size), {"disk0": d})
    repo.layout.point(p.id).write_text("{ not json")
    before = chunk_names(repo)
    age_chunks(repo)
    with pytest.raises(RepositoryError, match=f"GC refuses to run: restore point {p.id}"):
        repo.gc(margin=0)
    assert chunk_names(repo) == before
