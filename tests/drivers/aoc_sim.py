"""The AOC simulator the contract suite's aoc driver runs against: one `abdr aoc-sim`
process per test session (started on first use, on a free loopback port, with its own state
directory), a fresh cluster in it per test. Its tasks and leases are short, so the suite
stays quick; the driver's credentials are the simulator's default account."""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


class SimProcess:
    def __init__(self, *args: str, ca_file: str | None = None) -> None:
        self.args = args  # options of `abdr aoc-sim` this simulator always runs with
        self.ca_file = ca_file  # the CA of its certificate, when args serve HTTPS (--tls-cert/--tls-key)
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = Path()
        self.url = ""

    def ensure(self, *extra: str) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return self.url
        port = free_port()
        self.state = Path(tempfile.mkdtemp(prefix="abdr-aoc-sim-"))
        self.url = f"{'https' if '--tls-cert' in self.args else 'http'}://127.0.0.1:{port}"
        log = (self.state / "sim.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "starter.cli", "aoc-sim", "--port", str(port), "--state", str(self.state / "s"),
             "--task-delay", "0.002", "--lease-ttl", "3", *self.args, *extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        os.environ.update(ABDR_AOC_USERNAME="root", ABDR_AOC_PASSWORD="root", ABDR_AOC_SOURCE="LOCAL")
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/sim/health", timeout=2, verify=self._verify()).raise_for_status()
                break
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the AOC simulator did not start: {self.log_tail()}") from None
                time.sleep(0.1)
        atexit.register(self.stop)
        return self.url

    def _verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True

    def log_tail(self) -> str:
        try:
            return (self.state / "sim.log").read_text()[-3000:]
        except OSError:
            return ""

    def admin(self, path: str, body: dict[str, object]) -> dict[str, object]:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=60, verify=self._verify())
        r.raise_for_status()
        out: dict[str, object] = r.json()
        return out

    def fresh_cluster(self, vlans: tuple[str, ...] = ("vlan-prod", "vlan-dr", "vlan-test")) -> str:
        self.ensure()
        c = self.admin("/sim/clusters", {"name": f"t-{uuid.uuid4().hex[:8]}", "vlans": list(vlans)})
        return f"{self.url}#{c['id']}"

    def guest_write(self, vm_id: str, disk: str, offset: int, data: bytes) -> None:
        """The VM's guest writes to its disk (through the simulator, storage access or not)."""
        self.admin("/sim/vms/write", {"vm_id": vm_id, "disk": disk, "offset": offset,
                                      "data": base64.b64encode(data).decode()})

    def remove_cluster(self, endpoint: str) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.admin("/sim/clusters/delete", {"id": endpoint.partition("#")[2]})

    def kill(self) -> None:
        """The whole AOC down: its process killed, as a crash or a lost site would stop it."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.state != Path():
            shutil.rmtree(self.state, ignore_errors=True)


SIM = SimProcess()  # the session's AOC (of site a, when there are two)
SIM_B = SimProcess()  # a second AOC, for a second site
SIM_BARE = SimProcess("--no-storage-access")  # an AOC with only the public API (no /v2/storage)
