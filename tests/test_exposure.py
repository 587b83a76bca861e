"""Exposure rules that need no Temporal: the transport serves snapshots only (never a live
disk) and refuses to run on an empty or placeholder token; settings refuse placeholder
secrets; URLs shown to users carry no password."""

from __future__ import annotations

import os
import random
from pathlib import Path

import httpx
import pytest

from drivers.local import LocalDriver
from drivers.secrets import WeakSecret, redact_url
from drivers.transport.server import TransportServer, make_app
from models.inventory import DiskSpec, VMConfig
from starter.runtime.settings import Settings
from tests.ports import free_port

TOKEN = "a-real-transport-secret"



def test_transport_serves_snapshots_never_live_disks(tmp_path: Path) -> None:
    driver = LocalDriver(tmp_path / "c", "c")
    vm = driver.create_vm(VMConfig(name="v", disks=[DiskSpec(name="d", size_bytes=1 << 20)]))
    data = random.Random(3).randbytes(1 << 20)
    with driver.open_disk(vm.id, "d", writable=True) as h:
        h.write(0, data)
    snap = driver.create_snapshot(vm.id, "s")
    port = free_port()
    server = TransportServer(make_app(lambda name: driver, TOKEN, "a"), "127.0.0.1", port).start()
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"})
        base = {"cluster": "c", "vm_id": vm.id, "disk": "d"}
        for path, extra in (("/v1/read", {"extents": [[0, 4096]]}), ("/v1/extents", {})):
            for live in ({"snapshot_id": None}, {"snapshot_id": ""}, {}):
                if path == "/v1/extents" and live.get("snapshot_id") != "":
                    continue  # a required string there: anything but "" is refused by validation
                r = http.post(path, json={**base, **extra, **live})
                assert r.status_code == 400 and "serves snapshots only" in r.json()["error"], (path, live, r.text)
        # A snapshot is served (the same read through the real client, byte for byte).
        from drivers.transport.client import TransportClient
        from drivers.transport.protocol import ReadRequest

        client = TransportClient(f"http://127.0.0.1:{port}", TOKEN)
        try:
            got = client.read(ReadRequest(**base, snapshot_id=snap.id, extents=[(0, 1 << 20)]))
        finally:
            client.close()
        assert got == data
    finally:
        server.stop()


@pytest.mark.parametrize("token", ["", "   ", "change-me", "CHANGE-ME", "secret"])
def test_transport_refuses_a_missing_or_placeholder_token(tmp_path: Path, token: str) -> None:
    with pytest.raises(WeakSecret, match="ABDR_TRANSPORT_TOKEN"):
        make_app(lambda name: LocalDriver(tmp_path / "c", "c"), token, "a")


@pytest.mark.parametrize("field, value", [("transport_token", "change-me"), ("api_token", "changeme"),
                                          ("database_url", "postgresql://abdr:abdr@db:5432/abdr")])
def test_settings_refuse_placeholder_secrets(field: str, value: str) -> None:
    env = {f"ABDR_{field.upper()}": value}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with pytest.raises(ValueError, match="placeholder"):
            Settings()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_urls_are_shown_without_their_password() -> None:
    assert redact_url("postgresql://abdr:Pa55-word@db:5432/abdr") == "postgresql://abdr:***@db:5432/abdr"
    assert redact_url("postgresql://u:p@[::1]/x") == "postgresql://u:***@[::1]/x"
    assert redact_url("sqlite:////var/lib/abdr/catalog.db") == "sqlite:////var/lib/abdr/catalog.db"
