"""Real processes for durability tests: a Temporal dev server that can be SIGKILLed (or
stopped) and started again on the same SQLite state, and abdr workers that can be SIGKILLed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from models import search_attributes
from tests.ports import dev_server_port_flags, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent



def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


class DevServer:
    def __init__(self, db: Path, port: int | None = None) -> None:
        self.db, self.port = db, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "DevServer":
        cmd = [str(BIN / "temporal"), "server", "start-dev", "--db-filename", str(self.db), "--ip", "127.0.0.1",
               "--port", str(self.port), *dev_server_port_flags(), "--headless", "--log-level", "error",
               *search_attributes.dev_server_flags()]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush; only what the server had persisted survives."""
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


# The worker processes of a two-site world: workflows only, and one per site's activities.
WORKER_ROLES: dict[str, list[str]] = {"orchestrator": ["--no-site"], "a": ["--site", "a", "--no-workflows"],
                                      "b": ["--site", "b", "--no-workflows"]}


class WorkerProcess:
    """`python worker.py` with its own environment; its log goes to a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), *args], cwd=ROOT,
                                     env={**os.environ, **env, "ABDR_LOG_FORMAT": "json"},
                                     stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
        deadline = time.monotonic() + 60
        while b"workers running" not in log.read_bytes():
            assert self.proc.poll() is None, f"worker exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
