"""`abdr up` end to end: the real dev server with its Web UI, the workers and the catalog;
`abdr status` reports healthy; Ctrl-C leaves no process; a second start finds its state."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ABDR = str(Path(sys.executable).parent / "abdr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except FileNotFoundError:
            continue
        for k in map(int, kids):
            out.add(k)
            todo.append(k)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    port, ui = free_port(), free_port()
    return {**os.environ, "ABDR_DATA_DIR": str(tmp_path / "state"), "ABDR_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "ABDR_UI_PORT": str(ui), "ABDR_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}", "ABDR_LOG_FORMAT": "json",
            "ABDR_DEMO": "false"}


class Up:
    def __init__(self, env: dict[str, str]) -> None:
        self.log = open(Path(env["ABDR_DATA_DIR"]).parent / "up.log", "a")
        self.proc = subprocess.Popen([ABDR, "up"], env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.banner = ""
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in self.banner:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"abdr up exited {self.proc.returncode}: see {self.log.name}")
            self.banner += line
            assert time.monotonic() < deadline, "abdr up did not come up"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(60)
        finally:
            self.proc.stdout.close()
            self.log.close()


def status(env: dict[str, str]) -> tuple[int, dict]:
    r = subprocess.run([ABDR, "status", "--json"], env=env, capture_output=True, text=True, timeout=120)
    return r.returncode, json.loads(r.stdout)


def test_up_status_ctrl_c_and_restart(stack_env: dict[str, str]) -> None:
    up = Up(stack_env)
    try:
        kids = descendants(up.proc.pid)
        assert kids, "the dev server runs as a child of abdr up"
        assert "Temporal Web UI" in up.banner and "abdr status" in up.banner
        ui = httpx.get(stack_env["ABDR_TEMPORAL_UI_URL"], timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        code, report = status(stack_env)
        assert code == 0, report
        assert report["healthy"] and report["temporal"]["ok"] and report["catalog"]["ok"]
        polled = {w["task_queue"] for w in report["workers"] if w["pollers"]}
        assert polled == {"abdr-workflows", "abdr-site-default", "abdr-site-dr"}  # the demo's second site too
        assert report["probe"][0]["ok"] and report["probe"][0]["identity"]
        first_probe = report["probe"][0]
    finally:
        rc = up.stop()
    assert rc == 0
    deadline = time.monotonic() + 15
    while any(alive(k) for k in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [k for k in kids if alive(k)], "processes left behind after Ctrl-C"

    code, report = status(stack_env)  # everything is down now, and status says so
    assert code == 1 and not report["healthy"] and "cannot reach Temporal" in report["temporal"]["error"]

    again = Up(stack_env)  # the second start finds its state: catalog and workflow history
    try:
        code, report = status(stack_env)
        assert code == 0 and "default" in report["catalog"]["sites"]
        listed = subprocess.run(
            [str(Path(sys.executable).parent / "temporal"), "workflow", "list", "--address",
             stack_env["ABDR_TEMPORAL_ADDRESS"], "--query", "WorkflowType='HealthCheck'", "--output", "json"],
            capture_output=True, text=True, timeout=60, check=True)
        ids = {w["execution"]["workflowId"] for w in json.loads(listed.stdout or "[]")}
        assert len(ids) >= 2, f"the first run's workflow history was kept: {ids} (first probe {first_probe})"
    finally:
        assert again.stop() == 0


def test_second_up_on_same_state_is_refused(stack_env: dict[str, str]) -> None:
    up = Up(stack_env)
    try:
        r = subprocess.run([ABDR, "up"], env=stack_env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1
        assert "another `abdr up` is running on" in r.stderr and "Traceback" not in r.stderr
    finally:
        assert up.stop() == 0
