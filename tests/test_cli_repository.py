"""`abdr repository ...` as a user runs it, against `abdr up` with its demo seed: an encrypted
repository created, backed up to, restored from byte for byte and verified; a wrong or
missing key refused with a clear message; the key in none of the catalog database, the
logs or the workflow histories; and verify naming the catalog points whose manifest is
broken or gone, with a non-zero exit code."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import stat
from pathlib import Path

from drivers.local import LocalDriver
from drivers.repository import RepoKey
from tests.ports import free_port
from tests.quiet import quiet_time
from tests.test_cli_commands import Up, cli_json, run, run_plan_now


def disk_bytes(cluster_dir: Path, vm: str) -> bytes:
    driver = LocalDriver(cluster_dir, "local")
    found = driver.find_vm(vm)
    assert found is not None, vm
    with driver.open_disk(found.id, "disk0") as h:
        return h.read(0, h.size)


async def _histories(address: str) -> bytes:
    """Every workflow history on the server, with each payload's data decoded."""
    from temporalio.client import Client

    client = await Client.connect(address)
    out = bytearray()
    async for wf in client.list_workflows():
        text = (await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()).to_json()
        out += text.encode()
        for data in re.findall(r'"data":\s*"([A-Za-z0-9+/=]+)"', text):
            out += base64.b64decode(data)
    return bytes(out)


def point_of(result: dict) -> str:
    [vm] = result["vms"]
    assert vm["ok"], result
    return vm["point_id"]


def test_encrypted_repository_and_verify_through_the_cli(tmp_path: Path) -> None:
    ui, state = free_port(), tmp_path / "state"
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "ABDR_DATA_DIR": str(state), "ABDR_TEMPORAL_ADDRESS": address, "ABDR_UI_PORT": str(ui),
           "ABDR_TEMPORAL_UI_URL": f"http://127.0.0.1:{ui}", "ABDR_LOG_FORMAT": "json", "ABDR_DEMO": "true",
           "ABDR_EXTRA_SITES": "", "ABDR_LOG_LEVEL": "DEBUG"}
    up = Up(env, tmp_path / "up.log")
    cluster = state / "clusters" / "local"
    try:
        cli_json(env, "backup-plan", "pause", "demo")
        vault = tmp_path / "vault"
        created = cli_json(env, "repository", "create", "vault", "--path", str(vault), "--encrypt")
        key_file = Path(created["key_file"])  # type: ignore[index]
        key = json.loads(key_file.read_text())
        secrets = [key["aead"], key["id"]]
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
        assert not key_file.is_relative_to(vault)

        cli_json(env, "backup-plan", "create", "enc", "--vm", "local/web", "--repository", "vault",
                 "--retention", "count:5", "--schedule", f"daily {quiet_time()}")
        cli_json(env, "backup-plan", "pause", "enc")
        r = run_plan_now(env, "enc")
        assert r.returncode == 0, r.stderr
        point = point_of(json.loads(r.stdout))
        assert (vault / "points" / f"{point}.json").read_bytes().startswith(b"ABDM1")  # sealed on disk
        restored = cli_json(env, "restore", point, "--mode", "rebuild", "--new-name", "web-copy", "--wait")
        assert restored["vm"]["vm"] == "web-copy"  # type: ignore[index]
        assert disk_bytes(cluster, "web-copy") == disk_bytes(cluster, "web")  # the source, byte for byte
        ok = run("repository", "verify", "vault", "--wait", "--json", env=env)
        assert ok.returncode == 0 and json.loads(ok.stdout)["findings"] == 0, ok.stderr

        # A wrong key is refused, and so is an encrypted repository whose key the worker lacks.
        wrong = tmp_path / "wrong.key"
        RepoKey.generate().save(wrong)
        bad = run("repository", "add-key", "vault", "--key-file", str(wrong), env=env)
        assert bad.returncode == 1 and "the key does not belong to repository" in bad.stderr, bad.stderr
        kept = tmp_path / "kept.key"  # the copy the user keeps
        shutil.move(key_file, kept)
        lacking = run("repository", "create", "vault2", "--path", str(vault), env=env)
        assert lacking.returncode == 1 and "is encrypted" in lacking.stderr and "its key is not in" in lacking.stderr
        back = cli_json(env, "repository", "add-key", "vault", "--key-file", str(kept))
        assert Path(back["key_file"]).read_text() == kept.read_text()  # type: ignore[index]
        nokey = run("repository", "create", "plain", "--path", str(tmp_path / "plain"), "--key-file", str(kept),
                    env=env)
        assert nokey.returncode == 2 and "give --encrypt too" in nokey.stderr

        # Verify cross-checks the catalog: a manifest with a broken first byte, one deleted.
        r = run_plan_now(env, "demo")
        assert r.returncode == 0, r.stderr
        made = {v["vm"]["vm"]: v["point_id"] for v in json.loads(r.stdout)["vms"]}
        points = state / "repositories" / "main" / "points"
        broken, gone = points / f"{made['web']}.json", points / f"{made['db']}.json"
        blob = bytearray(broken.read_bytes())
        blob[0] ^= 0xFF
        broken.write_bytes(bytes(blob))
        gone.unlink()
        found = run("repository", "verify", "main", "--wait", "--json", env=env)
        assert found.returncode == 1, (found.stdout, found.stderr)
        result = json.loads(found.stdout)
        assert {(f["kind"], f["point_id"]) for f in result["damaged"]} == {
            ("unreadable_manifest", made["web"]), ("missing_manifest", made["db"])}
        assert sorted(result["damaged_points"]) == sorted([made["web"], made["db"]])
        for pid in (made["web"], made["db"]):
            assert cli_json(env, "restore-point", "show", pid)["state"] == "DAMAGED"  # type: ignore[index]
        assert cli_json(env, "restore-point", "show", made["app"])["state"] == "READY"  # type: ignore[index]
        page = cli_json(env, "repository", "findings", "main", "--limit", "1")
        assert page["total"] == 2 and len(page["findings"]) == 1  # type: ignore[index]
        histories = asyncio.run(_histories(address))
    finally:
        assert up.stop() == 0

    # The key is nowhere but in its key file: not in the catalog, the logs, any history.
    raw = [bytes.fromhex(s) for s in secrets]
    stores = {"catalog": b"".join(p.read_bytes() for p in state.glob("catalog.db*")),
              "logs": (tmp_path / "up.log").read_bytes(), "histories": histories}
    for where, data in stores.items():
        assert data, where
        for s in secrets:
            assert s.encode() not in data and s.upper().encode() not in data, where
        for b in raw:
            assert b not in data and base64.b64encode(b) not in data, where
