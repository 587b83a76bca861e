"""A qemu-nbd started by a driver never outlives the process that started it, even when that
process is killed between the fork and the moment the child arranges to die with it (the
race left a server holding a killed writer's pipes forever, one fork in twenty)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivers.qcow2.nbd import dies_with_this_process

ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_child_whose_parent_is_already_gone_exits_without_running(tmp_path: Path) -> None:
    # the argv as another process built it, run from this one: to the child, its parent
    # is not the process that asked for it, exactly as after that process died
    code = "import json; from drivers.qcow2.nbd import dies_with_this_process as d; print(json.dumps(d(['touch', 'ran'])))"
    argv = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                     check=True).stdout)
    done = subprocess.run(argv, cwd=tmp_path)
    assert done.returncode != 0 and not (tmp_path / "ran").exists()


def test_a_child_of_a_live_parent_runs_and_dies_when_the_parent_is_killed(tmp_path: Path) -> None:
    done = subprocess.run(dies_with_this_process(["touch", "ran"]), cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "ran").exists()

    code = ("import os, subprocess, sys, time; from drivers.qcow2.nbd import dies_with_this_process as d; "
            "p = subprocess.Popen(d(['sleep', '600'])); print(p.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    server = int(parent.stdout.readline())
    deadline = time.monotonic() + 60  # a hang guard: sh has to exec sleep first
    while Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")[0] != b"sleep" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert alive(server)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    while alive(server) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(server), "the child outlived the process that started it"
