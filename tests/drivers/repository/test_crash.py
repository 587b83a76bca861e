"""Crash safety with real processes: a backup SIGKILLed between its chunk writes and its
manifest leaves no visible point, and a retry completes, resuming where the durable journal
ends and reusing the chunks already written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.repository import Repository, RepositoryError, SyncMode
from tests.drivers.repository.conftest import CS, FileDisk, MiB, make_content, restore_bytes, vm_config

ROOT = Path(__file__).resolve().parents[3]

CHILD = r"""
import os, sys, time
sys.path.insert(0, {root!r})
from drivers.repository import Repository
from tests.drivers.repository.conftest import vm_config
repo = Repository.open({repo!r})
vm = vm_config(disk0={size})
fd = os.open({image!r}, os.O_RDONLY)
reads = 0
def read_at(off, n):
    global reads
    reads += 1
    if reads == {block_at}:
        open({marker!r}, "w").close()
        time.sleep(3600)   # killed here, with earlier chunks in flight or written
    return os.pread(fd, n, off)
s = repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p1")
s.backup_disk("disk0", {size}, read_at, workers=2, checkpoint_bytes={cp_bytes})
if {block_at} == 0:
    open({marker!r}, "w").close()
    time.sleep(3600)       # killed after the disk is done, before commit
s.commit()
"""


def journaled(repo: Repository, point_id: str, disk: str) -> int:
    from drivers.repository.journal import read_entries

    return len(read_entries(repo.layout.staging / point_id / f"{disk}.journal")) // 32


def run_until_marker_then_kill(tmp_path: Path, repo: Repository, image: Path, size: int, block_at: int,
                               wait_chunks: int = 1, wait_journal: int = 0) -> None:
    marker = tmp_path / "marker"
    code = CHILD.format(root=str(ROOT), repo=str(repo.root), image=str(image), size=size, block_at=block_at,
                        marker=str(marker), cp_bytes=4 * CS)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() or count_chunks(repo) < wait_chunks or journaled(repo, "p1", "disk0") < wait_journal:
            assert proc.poll() is None, f"child exited early with {proc.returncode}"
            assert time.monotonic() < deadline, "child never reached the kill point"
            time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def count_chunks(repo: Repository) -> int:
    return sum(1 for e in repo.store.iter_files() if not e.name.startswith("."))


@pytest.mark.parametrize("sync", [SyncMode.NONE, SyncMode.SYNCFS])
def test_kill_between_chunks_and_manifest_then_retry(tmp_path: Path, sync: SyncMode) -> None:
    size = 4 * MiB
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=sync)
    content = make_content(size, 21)
    src = FileDisk(tmp_path / "src.img", size, content)
    run_until_marker_then_kill(tmp_path, repo, src.path, size, block_at=40, wait_chunks=8, wait_journal=4)

    # Nothing visible, from this process or a fresh one.
    assert Repository.open(repo.root).list_points() == []
    assert [p for p in os.listdir(repo.layout.points) if not p.startswith(".")] == []
    with pytest.raises(Exception, match="no restore point 'p1'"):
        repo.get_point("p1")
    written_by_killed = count_chunks(repo)
    assert written_by_killed > 0

    # The journal says how far the killed attempt durably got.
    done = journaled(repo, "p1", "disk0")
    assert 4 <= done < 40

    # Retry in another process (this one): resumes at the journal, re-reads nothing before it.
    vm = vm_config(disk0=size)
    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p1") as s:
        w = s.disk_writer("disk0", size, src.read_at)
        assert w.progress.chunk_index == 0
        dm = w.run()
        assert w.resumed_at == done
        point = s.commit()
    assert min(off for off, _ in src.reads) == done * CS
    assert len(src.reads) == size // CS - done
    # Chunks the killed attempt wrote were reused, not written twice.
    distinct = len(dm.chunks.digests())
    assert count_chunks(repo) == distinct
    assert count_chunks(repo) - written_by_killed < distinct
    assert restore_bytes(repo, point.id, "disk0", tmp_path) == content
    assert os.listdir(repo.layout.staging) == []
    src.close()


def test_kill_after_disks_done_before_commit(tmp_path: Path) -> None:
    size = 1 * MiB
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE)
    content = make_content(size, 22)
    src = FileDisk(tmp_path / "src.img", size, content)
    run_until_marker_then_kill(tmp_path, repo, src.path, size, block_at=0)
    assert repo.list_points() == []
    with repo.begin_backup(vm_id="vm1", vm_config=vm_config(disk0=size), point_id="p1") as s:
        s.backup_disk("disk0", size, src.read_at)
        point = s.commit()
    assert src.reads == []  # the disk was done: nothing read again
    assert restore_bytes(repo, point.id, "disk0", tmp_path) == content
    src.close()


def test_in_process_failure_resumes_from_progress(tmp_path: Path) -> None:
    """A read error mid-disk (a dying worker) keeps the completed prefix; the heartbeat-style
    progress names it and the retry starts there without re-reading."""
    size = 2 * MiB
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE)
    src = FileDisk(tmp_path / "src.img", size, make_content(size, 23))
    vm = vm_config(disk0=size)
    beats = []

    def failing_read(off: int, n: int) -> bytes:
        if off >= 20 * CS:
            raise OSError("source went away")
        return src.read_at(off, n)

    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p2") as s:
        w = s.disk_writer("disk0", size, failing_read, checkpoint_bytes=3 * CS)
        with pytest.raises(OSError, match="source went away"):
            w.run(on_progress=beats.append)
    durable = w.progress.chunk_index
    assert durable == 20 and beats[-1].chunk_index == 20 and beats[-1].bytes_done == 20 * CS
    src.reads.clear()
    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p2") as s:
        w2 = s.disk_writer("disk0", size, src.read_at)
        w2.run()
        s.commit()
    assert w2.resumed_at == durable
    assert [off // CS for off, _ in src.reads] == list(range(durable, size // CS))
    assert restore_bytes(repo, "p2", "disk0", tmp_path) == src.content()
    src.close()


def test_resume_with_a_different_source_starts_over(tmp_path: Path) -> None:
    size = 1 * MiB
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE)
    src = FileDisk(tmp_path / "src.img", size, make_content(size, 24))
    vm = vm_config(disk0=size)

    def failing_read(off: int, n: int) -> bytes:
        if off >= 8 * CS:
            raise OSError("boom")
        return src.read_at(off, n)

    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p3") as s:
        with pytest.raises(OSError):
            s.disk_writer("disk0", size, failing_read, source_id="snap-1", checkpoint_bytes=CS).run()
    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p3") as s:
        w = s.disk_writer("disk0", size, src.read_at, source_id="snap-2")
        w.run()
        assert w.resumed_at == 0  # another snapshot: the journal of snap-1 is not trusted
        s.commit()
    # A retry after a successful commit (the activity died before reporting) is a no-op
    # that returns the committed point; the same id for another backup is refused.
    src.reads.clear()
    with repo.begin_backup(vm_id="vm1", vm_config=vm, point_id="p3") as s:
        s.disk_writer("disk0", size, src.read_at, source_id="snap-2").run()
        assert s.commit().id == "p3"
    assert src.reads == []
    with pytest.raises(RepositoryError, match="already committed for another backup"):
        repo.begin_backup(vm_id="vm2", vm_config=vm, point_id="p3")
    src.close()
