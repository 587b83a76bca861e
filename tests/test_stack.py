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
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

ABDR = str(Path(sys.executable).parent / "abdr")


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
            "ABDR_UI_PORT": str(ui), "ABDR_LOG_FORMAT": "json", "ABDR_DEMO": "false"}


class Up:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.log = open(Path(env["ABDR_DATA_DIR"]).parent / "up.log", "a")
        self.proc = subprocess.Popen([ABDR, "up"], env=env, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.banner = ""
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything" not in self.banner:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                self.log.flush()
                raise AssertionError(f"abdr up exited {self.proc.returncode}: {self.logs()}")
            self.banner += line
            assert time.monotonic() < deadline, f"abdr up did not come up: {self.logs()}"

    def logs(self) -> str:
        """What abdr up and its dev server said, for a failure's message (CI keeps no files)."""
        state = Path(self.env["ABDR_DATA_DIR"])
        return "\n".join(f"--- {f.name}:\n{f.read_text(errors='replace')[-3000:]}"
                         for f in (state.parent / "up.log", state / "temporal.log") if f.exists())

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
        ui_port = stack_env["ABDR_UI_PORT"]  # no ABDR_TEMPORAL_UI_URL: the links follow the port
        assert f"Temporal Web UI : http://localhost:{ui_port}" in up.banner
        ui = httpx.get(f"http://127.0.0.1:{ui_port}", timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()
        code, report = status(stack_env)
        assert code == 0, report
        assert report["healthy"] and report["temporal"]["ok"] and report["catalog"]["ok"]
        assert report["temporal"]["ui"] == f"http://localhost:{ui_port}"
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


def test_a_dev_server_that_dies_is_reported_with_its_log(stack_env: dict[str, str]) -> None:
    """A dev server that cannot start (here: its database file is not a database) ends
    `abdr up` at once with the server's own words, not a connect timeout later."""
    state = Path(stack_env["ABDR_DATA_DIR"])
    state.mkdir(parents=True)
    (state / "temporal.db").write_bytes(b"this is not a SQLite database" * 100)
    r = subprocess.run([ABDR, "up"], env=stack_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "the Temporal dev server exited with code" in r.stderr and "Traceback" not in r.stderr


def test_a_port_another_process_holds_is_an_error_not_a_foreign_temporal(tmp_path: Path) -> None:
    """Between `abdr up`'s check that its ports are free and its dev server's bind, another
    process can take the gRPC port. The dev server then exits; the listener that answers on
    the port is not ours, and `abdr up` must say so, not hand its workers that process."""
    import asyncio

    from starter.runtime.settings import Settings
    from starter.stack.errors import StackError
    from starter.stack.up import dev_server_command, wait_for_dev_server

    settings = Settings(data_dir=tmp_path, temporal_address=f"127.0.0.1:{free_port()}", ui_port=free_port())
    with socket.socket() as holder:  # the other process: it listens on our gRPC port
        holder.bind(("127.0.0.1", settings.temporal_port))
        holder.listen()
        with open(tmp_path / "temporal.log", "ab") as log:
            server = subprocess.Popen(dev_server_command(settings), stdout=log, stderr=subprocess.STDOUT)
        try:
            with pytest.raises(StackError, match="exited with code .*address already in use"):
                asyncio.run(wait_for_dev_server(server, settings, asyncio.Event(), timeout_s=120))
        finally:
            server.kill()
            server.wait()


# -- secrets stay secret ------------------------------------------------------------------------

@pytest.fixture
def pg_with_password() -> Iterator[str]:
    """A database owned by a role with a password on the local PostgreSQL (which trusts
    loopback, so the password only has to be carried, and must never be shown)."""
    import uuid

    import psycopg

    name = f"abdr_sec_{uuid.uuid4().hex[:10]}"
    password = f"dbpw-{uuid.uuid4().hex}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
    try:
        yield f"postgresql://{name}:{password}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')


def small_files(root: Path, limit: int = 32 << 20) -> Iterator[Path]:
    """Every file under root but disk images and repository chunks (data, not text)."""
    for p in root.rglob("*"):
        if p.is_file() and p.suffix not in (".raw", ".undo") and "chunks" not in p.parts and p.stat().st_size < limit:
            yield p


def histories(address: str) -> list[str]:
    """Every workflow history on the server, as JSON."""
    import asyncio

    from temporalio.client import Client

    async def fetch() -> list[str]:
        client = await Client.connect(address)
        out = []
        async for wf in client.list_workflows():
            out.append((await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()).to_json())
        return out

    return asyncio.run(fetch())


def test_secrets_never_appear_in_output_logs_listings_or_histories(
        stack_env: dict[str, str], pg_with_password: str, tmp_path: Path) -> None:
    from urllib.parse import urlsplit

    import psycopg

    secrets = {"transport token": "tt-" + os.urandom(12).hex(), "API token": "at-" + os.urandom(12).hex(),
               "database password": urlsplit(pg_with_password).password or ""}
    env = {**stack_env, "ABDR_DEMO": "true", "ABDR_DATABASE_URL": pg_with_password,
           "ABDR_TRANSPORT_TOKEN": secrets["transport token"], "ABDR_API_TOKEN": secrets["API token"]}
    seen: dict[str, str] = {}
    up = Up(env)
    try:
        assert "Demo seeded" in up.banner and "Demo DR seeded" in up.banner, up.banner
        seen["abdr up banner"] = up.banner

        def abdr(*args: str) -> None:
            r = subprocess.run([ABDR, *args], env=env, capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, (args, r.stdout, r.stderr)
            seen[" ".join(args)] = r.stdout + r.stderr

        # Operations that use every secret: the catalog, the transport (a cross-site pull), the API.
        abdr("backup-plan", "run", "demo", "--wait")
        abdr("replication-plan", "run", "demo-dr", "--wait")
        for noun in ("site", "cluster", "repository", "backup-plan", "replication-plan", "replica", "job"):
            abdr(noun, "list", "--json")
        abdr("status", "--json", "--site", "default", "--site", "dr")
        port = free_port()
        api = subprocess.Popen([ABDR, "api", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(url + "/openapi.json", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and api.poll() is None, "abdr api did not come up"
                    time.sleep(0.2)
            good = {"Authorization": f"Bearer {secrets['API token']}"}
            for path in ("/openapi.json", "/v1/backup-plans", "/v1/replication-plans", "/v1/replicas", "/v1/jobs"):
                seen[f"GET {path}"] = httpx.get(url + path, headers=good, timeout=60).text
            seen["401"] = httpx.get(url + "/v1/backup-plans", headers={"Authorization": "Bearer nope"}).text
        finally:
            api.terminate()
            seen["abdr api output"] = api.communicate(timeout=30)[0]
        for i, h in enumerate(histories(env["ABDR_TEMPORAL_ADDRESS"])):
            seen[f"workflow history {i}: {h[:200]}"] = h
    finally:
        assert up.stop() == 0
    seen["abdr up stdout (rest)"] = up.proc.stdout.read() if not up.proc.stdout.closed else ""
    for p in small_files(Path(env["ABDR_DATA_DIR"]).parent):  # logs (up.log, temporal.log), the state dir
        seen[str(p)] = p.read_bytes().decode(errors="replace")
    with psycopg.connect(pg_with_password) as conn:  # the catalog, every row of every table
        tables = [t for t, in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for t in tables:
            seen[f"catalog table {t}"] = "\n".join(r for r, in conn.execute(f'SELECT row_to_json(x)::text FROM "{t}" x'))
    # The runs, and the admin service whose history holds every listing and change made above
    # (admin calls are its Updates, no longer a workflow each).
    assert len([k for k in seen if k.startswith("workflow history")]) >= 5
    assert any(k.startswith("workflow history") and '"AdminService"' in v for k, v in seen.items())
    assert any("Catalog" in v and "***" in v for v in seen.values())  # the URL is shown, its password is not
    leaks = [(what, where) for what, secret in secrets.items() for where, text in seen.items() if secret in text]
    assert not leaks, leaks
