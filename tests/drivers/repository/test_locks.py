"""The maintenance lock: two maintenance jobs never run at once, with a clear error naming the
holder; a dead holder does not block forever."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from drivers.repository import MaintenanceLock, Repository, RepositoryLocked
from drivers.repository.config import host_id
from models.retention import Retention
from tests.drivers.repository.conftest import KiB, backup, make_content, vm_config


def test_second_maintenance_job_gets_a_clear_error(repo: Repository) -> None:
    with repo.maintenance_lock("gc"):
        with pytest.raises(RepositoryLocked) as err:
            repo.prune(Retention.count(1), datetime.now(UTC))
        msg = str(err.value)
        assert f"locked by gc (host {host_id()}, pid {os.getpid()}" in msg and "cannot run prune" in msg
        assert err.value.holder["op"] == "gc"
        with pytest.raises(RepositoryLocked, match="locked by gc"):
            repo.gc()
        with pytest.raises(RepositoryLocked, match="cannot run delete p1"):
            repo.delete_point("p1")
    # Released: the next job runs.
    assert repo.gc().swept_chunks == 0


def test_lock_held_by_another_process(repo: Repository, tmp_path) -> None:
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from drivers.repository import Repository\n"
        "r = Repository.open(%r)\n"
        "with r.maintenance_lock('verify-repair'):\n"
        "    print('locked', flush=True); time.sleep(3600)\n"
    ) % (os.getcwd(), str(repo.root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RepositoryLocked, match=f"locked by verify-repair .*pid {proc.pid}"):
            repo.gc()
    finally:
        proc.kill()
        proc.wait()
    # The holder died (SIGKILL, no cleanup): on the same host it is recognised at once.
    report = repo.gc()
    assert report.swept_chunks == 0
    assert not (repo.layout.locks / "maintenance.json").exists()


def test_lock_of_another_host_expires(repo: Repository) -> None:
    path = repo.layout.locks / "maintenance.json"
    path.write_text(json.dumps({"op": "gc", "host": "other-host", "pid": 1, "id": "x", "started": "then"}))
    with pytest.raises(RepositoryLocked, match="host other-host"):
        MaintenanceLock(repo.layout, "prune").acquire()
    old = time.time() - 10_000
    os.utime(path, (old, old))  # not refreshed for ages: stale
    lock = MaintenanceLock(repo.layout, "prune").acquire()
    assert json.loads(path.read_text())["id"] == lock.id
    lock.release()
    assert not path.exists()


def test_backups_do_not_need_the_lock(repo: Repository, disks) -> None:
    size = 256 * KiB
    d = disks("d", size, make_content(size, 60))
    with repo.maintenance_lock("gc"):
        p = backup(repo, vm_config(disk0=size), {"disk0": d})
        assert repo.verify().ok  # read-only verify needs no lock either
    assert repo.get_point(p.id)
