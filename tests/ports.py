"""Ports for the servers the tests start (dev servers, `abdr up`, simulators, the API).

A port found by binding port 0 and closing the socket is an *ephemeral* port: the kernel
hands the same range to every outgoing connection (gRPC, PostgreSQL, HTTP) and to every
other bind-0, so between our close and the server's bind another process of the run can
take it (`bind: address already in use` in a fresh-clone CI). Ports here come from below
the kernel's ephemeral range instead, where nothing is assigned without asking, and each
xdist worker draws from a block of its own, so two workers of a run never pick the same
port. A bind check skips a port something else holds (a second pytest run, a user's
server)."""

from __future__ import annotations

import itertools
import os
import socket
from pathlib import Path

FIRST_PORT = 10_000  # above the well-known and registered ports the machine's services use
BLOCK = 2_000  # ports per xdist worker: 8 workers fit below 32768, the usual ephemeral start


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")  # "gw3"; no xdist: the first block
    return int(worker[2:]) if worker[2:].isdigit() else 0


def _candidates() -> itertools.cycle[int]:
    low = FIRST_PORT + _worker_index() * BLOCK
    high = min(low + BLOCK, _ephemeral_start())
    if high - low < 100:
        raise RuntimeError(f"no room for test ports below the ephemeral range ({_ephemeral_start()}) "
                           f"for xdist worker {_worker_index()}")
    start = low + os.getpid() % (high - low)  # two runs side by side start apart
    return itertools.cycle([*range(start, high), *range(low, start)])


_ports = _candidates()


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing holds now, never handed out before by this process (while
    the block lasts) and outside every other xdist worker's block."""
    for _ in range(BLOCK):
        port = next(_ports)
        if bindable(port):
            return port
    raise RuntimeError("no free test port in this worker's block")


def dev_server_port_flags() -> list[str]:
    """`temporal server start-dev` picks its HTTP API and metrics ports itself, from the
    ephemeral range (the same race as above): give it ports from this worker's block."""
    return ["--http-port", str(free_port()), "--metrics-port", str(free_port())]
