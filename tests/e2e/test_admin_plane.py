"""The Admin workflow is a closed list of typed operations: anyone who reaches Temporal can
start it, so an unknown operation or a bad payload is refused before any activity runs
and changes nothing. And a local cluster's --path must be an abdr cluster or empty/new."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

import worker
from models.admin import ADMIN_OPS
from models.queues import WORKFLOW_TASK_QUEUE
from starter.client import AbdrError
from tests.e2e.conftest import Stack
from workflows.admin import AdminCall

ABDR = str(Path(sys.executable).parent / "abdr")


async def refused(client: Client, call: AdminCall) -> ApplicationError:
    """Start Admin with `call` as any Temporal client could; it must fail at once,
    non-retryable, with no activity scheduled."""
    handle = await client.start_workflow("Admin", call, id=f"admin/attack/{uuid.uuid4().hex[:8]}",
                                         task_queue=WORKFLOW_TASK_QUEUE)
    with pytest.raises(WorkflowFailureError) as info:
        await handle.result()
    cause = info.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest" and cause.non_retryable
    events = [e.event_type async for e in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in events
    return cause


async def test_unknown_operation_is_refused_and_runs_nothing(stack: Stack) -> None:
    client = stack.client.client
    before = await stack.client.list_clusters()
    # An activity that exists on the worker but is no admin operation, and one that does not exist.
    for op in ("resolve_plan", "drop_everything"):
        err = await refused(client, AdminCall(operation=op, payload={"name": "x"}))
        assert f"unknown admin operation {op!r}" in err.message
    # A site operation sent to the catalog queue, a catalog operation sent to a site.
    err = await refused(client, AdminCall(operation="delete_restore_points", payload={"ids": ["p"]}))
    assert "runs on a site's worker" in err.message
    err = await refused(client, AdminCall(operation="add_site", payload={"name": "s2"}, site="default"))
    assert "runs on the catalog's worker" in err.message
    assert await stack.client.list_clusters() == before


async def test_malformed_payload_is_refused_and_changes_nothing(stack: Stack) -> None:
    client = stack.client.client
    sites = await stack.client.list_sites()
    err = await refused(client, AdminCall(operation="add_site", payload={"name": "../../etc", "admin": True}))
    assert "invalid payload" in err.message and "name" in err.message and "admin" in err.message
    # The naming rules in words, as every refusal of a name says them, not as a regular expression.
    assert "name: '../../etc' looks like a path ('/', '\\' or '..'); a name uses letters, digits" in err.message
    assert "pattern" not in err.message and "[A-Za-z" not in err.message
    err = await refused(client, AdminCall(operation="list_jobs", payload={"limit": 10**9}))
    assert "limit" in err.message
    err = await refused(client, AdminCall(operation="add_cluster",
                                          payload={"name": "c9", "site": "default", "driver": "shell"}))
    assert "driver: 'shell' is not one of 'local', 'aoc', 'libvirt'" in err.message
    assert await stack.client.list_sites() == sites
    assert "c9" not in {c.name for c in await stack.client.list_clusters()}
    # The same operations with good payloads run.
    assert (await stack.client.add_site("s2")).name == "s2"


def test_every_admin_activity_is_a_listed_operation() -> None:
    """The closed list and the workers agree: an `admin_*` activity without a request model
    would be unreachable, a listed operation without an activity would hang."""
    from drivers.catalog.store import Catalog
    from starter.runtime.settings import Settings

    names: dict[str, bool] = {}
    catalog = Catalog("sqlite://")
    try:
        for fn in worker.catalog_activities(catalog, None):  # type: ignore[arg-type]
            names[fn.__temporal_activity_definition.name] = False
        for fn in worker.site_activities(catalog, "default", Settings(transport_token="t" * 32)):
            names[fn.__temporal_activity_definition.name] = True
    finally:
        catalog.close()
    admin = {n.removeprefix("admin_"): on_site for n, on_site in names.items() if n.startswith("admin_")}
    assert admin == {op: spec.on_site for op, spec in ADMIN_OPS.items()}


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


def cli(stack: Stack, tmp_path: Path) -> Callable[..., Awaitable[tuple[int, str]]]:
    """`abdr ARGS` as a user runs it against the stack's server: (exit code, stdout + stderr)."""
    env = {**os.environ, "ABDR_TEMPORAL_ADDRESS": stack.settings.temporal_address,
           "ABDR_DATA_DIR": str(tmp_path / "cli")}

    async def abdr(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(ABDR, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    return abdr


async def test_repository_path_problems_say_what_to_do(stack: Stack, tmp_path: Path) -> None:
    """A path the site's worker cannot use is refused as bad input (exit 2) in one line that
    says what is wrong and what to give instead, not as an errno string."""
    abdr = cli(stack, tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    cases = {
        a_file: "is a file (or inside one), not a directory: give a new or empty directory",
        Path("/proc/abdr-repo"): "cannot be created or used (No such file or directory): give a directory on "
                                 "a mounted, writable file system",
        Path("/sys/abdr-repo"): "cannot be created or written by the site's worker (permission denied): give a "
                                "directory it may write",
    }
    for i, (path, words) in enumerate(cases.items()):
        code, out = await abdr("repository", "create", f"bad{i}", "--path", str(path))
        assert code == 2 and len(out.splitlines()) == 1 and f"error: repository path {path} {words}" in out, out
        assert "Errno" not in out
    code, out = await abdr("repository", "create", "bad-key", "--path", str(tmp_path / "new-repo"), "--encrypt",
                           "--key-file", str(tmp_path / "no-such.key"))
    assert code == 1 and out.splitlines() == [
        f"error: cannot read repository key file {tmp_path / 'no-such.key'} (no such file or directory): give the "
        "path of the key file as the site's worker sees it"], out
    assert not {f"bad{i}" for i in range(len(cases))} & {r.name for r in await stack.client.list_repositories()}


async def test_cluster_path_that_is_not_a_cluster_is_refused(stack: Stack, tmp_path: Path) -> None:
    # A directory like /var: other software's files, among them a tmp/ the driver would empty.
    foreign = tmp_path / "var"
    (foreign / "tmp").mkdir(parents=True)
    (foreign / "tmp" / "session").write_bytes(b"someone else's data")
    (foreign / "log").mkdir()
    (foreign / "log" / "syslog").write_bytes(b"x" * 1000)
    before = tree_digest(foreign)
    abdr = cli(stack, tmp_path)
    code, out = await abdr("cluster", "add", "c9", "--site", "default", "--path", str(foreign))
    assert code != 0 and "is not empty and is not an abdr cluster" in out and "Traceback" not in out
    assert tree_digest(foreign) == before
    assert "c9" not in {c.name for c in await stack.client.list_clusters()}
    # A new directory, and an existing abdr cluster (c1 of the stack, with a VM), are accepted.
    code, out = await abdr("cluster", "add", "c10", "--site", "default", "--path", str(tmp_path / "new"))
    assert code == 0, out
    from drivers.local import LocalDriver

    LocalDriver(tmp_path / "existing", "c12").create_vm(stack.driver.get_vm(stack.make_vm("keep", size=1 << 20)).config)
    code, out = await abdr("cluster", "add", "c12", "--site", "default", "--path", str(tmp_path / "existing"))
    assert code == 0, out
    # Another cluster's directory under a different name is refused too (two names, one cluster).
    code, out = await abdr("cluster", "add", "c13", "--site", "default", "--path", str(stack.driver.paths.root))
    assert code != 0 and "holds cluster 'c1', not 'c13'" in out
    # An endpoint its driver cannot take is refused too, before the catalog has it.
    with pytest.raises(AbdrError, match="names no AOC cluster id"):
        await stack.client.add_cluster("c14", "default", "aoc", "https://aoc.example")
    assert "c14" not in {c.name for c in await stack.client.list_clusters()}


def test_driver_never_adopts_a_foreign_directory(tmp_path: Path) -> None:
    """Wherever a driver is opened (a site worker on another machine), not only at `add`."""
    from drivers.base import DriverError
    from drivers.local import LocalDriver

    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "keep").write_text("keep me")
    with pytest.raises(DriverError, match="not an abdr cluster"):
        LocalDriver(tmp_path, "c1")
    assert (tmp_path / "tmp" / "keep").read_text() == "keep me"
    assert not (tmp_path / "cluster.json").exists()


@pytest.mark.hypervisor
async def test_libvirt_cluster_through_the_cli(stack: Stack, tmp_path: Path) -> None:
    """`abdr cluster add --driver libvirt --endpoint URI --path DIR` through the real stack:
    the endpoint names the directory, `vm list` shows the host's domains that belong to it
    (one abdr created there, one defined outside abdr with its disk there), not others."""
    from drivers.libvirt import LibvirtDriver
    from tests.drivers.helpers import config
    from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir

    mine, other = fresh_cluster_dir(), fresh_cluster_dir()
    endpoint = f"qemu:///system#{mine}"
    try:
        LibvirtDriver(endpoint, "kvm1").create_vm(config("made-by-abdr"))
        LibvirtDriver(f"qemu:///system#{other}", "kvm2").create_vm(config("elsewhere"))
        import libvirt

        from drivers.qcow2.images import create

        create(mine / "foreign.qcow2", 1 << 20)
        conn = libvirt.open("qemu:///system")
        conn.defineXML(f"""<domain type='qemu'><name>foreign-{mine.name}</name><memory unit='MiB'>64</memory>
          <os><type arch='x86_64'>hvm</type></os><devices><disk type='file' device='disk'>
          <driver name='qemu' type='qcow2'/><source file='{mine}/foreign.qcow2'/><target dev='vda' bus='virtio'/>
          </disk></devices></domain>""")
        conn.close()
        env = {**os.environ, "ABDR_TEMPORAL_ADDRESS": stack.settings.temporal_address,
               "ABDR_DATA_DIR": str(tmp_path / "cli")}
        proc = await asyncio.create_subprocess_exec(
            ABDR, "cluster", "add", "kvm1", "--site", "default", "--driver", "libvirt",
            "--endpoint", "qemu:///system", "--path", str(mine), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode()
        got = {c.name: c for c in await stack.client.list_clusters()}["kvm1"]
        assert (got.driver, got.endpoint) == ("libvirt", endpoint)
        vms = await stack.client.list_vms("kvm1", "default")
        assert [v.name for v in vms] == [f"foreign-{mine.name}", "made-by-abdr"]
        assert [d.name for d in vms[0].config.disks] == ["vda"]  # a foreign disk is named by its target
        with pytest.raises(AbdrError, match="not a libvirt URI"):
            await stack.client.add_cluster("kvm3", "default", "libvirt", "/not/a/uri")
    finally:
        remove_cluster_dir(endpoint)
        remove_cluster_dir(f"qemu:///system#{other}")


@pytest.mark.hypervisor
async def test_status_reports_each_cluster_and_the_libvirt_versions(stack: Stack, tmp_path: Path) -> None:
    """`abdr status` through the real stack: the site's worker reaches each of its clusters
    and says how (the local one's directory; the libvirt one's daemon and hypervisor
    versions, as `virsh version --daemon` prints them). A libvirt host that stops answering
    after it was added makes status fail, naming that cluster, the others still ok."""
    import json
    import re
    import subprocess

    from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir

    async def status(*args: str) -> tuple[int, str]:
        env = {**os.environ, "ABDR_TEMPORAL_ADDRESS": stack.settings.temporal_address,
               "ABDR_DATABASE_URL": stack.settings.catalog_url, "ABDR_DATA_DIR": str(tmp_path / "cli"),
               "COLUMNS": "250"}
        proc = await asyncio.create_subprocess_exec(ABDR, "status", "--site", "default", *args, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    virsh = subprocess.run(["virsh", "-c", "qemu:///system", "version", "--daemon"], capture_output=True, text=True,
                           check=True).stdout
    daemon = re.search(r"Running against daemon: (\S+)", virsh)
    hypervisor = re.search(r"Running hypervisor: (.+)", virsh)
    assert daemon and hypervisor, virsh
    libvirt_version, qemu_version = daemon.group(1), hypervisor.group(1).strip()
    mine = fresh_cluster_dir()
    endpoint = f"qemu:///system#{mine}"
    # a second libvirt cluster reached through a socket path that goes away: a host gone down
    socket = tmp_path / "libvirt-sock"
    socket.symlink_to("/run/libvirt/libvirt-sock")
    try:
        await stack.cli("cluster", "add", "kvm1", "--site", "default", "--driver", "libvirt",
                        "--endpoint", "qemu:///system", "--path", str(mine))
        await stack.cli("cluster", "add", "kvm-gone", "--site", "default", "--driver", "libvirt",
                        "--endpoint", f"qemu+unix:///system?socket={socket}", "--path", str(tmp_path / "gone"))

        code, out = await status("--json")
        report = json.loads(out)
        assert code == 0 and report["healthy"], out
        (probe,) = report["probe"]
        health = {c["name"]: c for c in probe["cluster_health"]}
        assert set(health) == {"c1", "kvm1", "kvm-gone"} and all(c["ok"] for c in health.values()), health
        assert health["kvm1"]["versions"] == {"libvirt": libvirt_version, "hypervisor": qemu_version}
        assert health["kvm1"]["reached"].startswith("qemu:///system on ") and str(mine) in health["kvm1"]["reached"]
        assert health["c1"]["driver"] == "local" and health["c1"]["reached"].startswith("directory ")
        assert health["c1"]["versions"] == {}
        code, text = await status()
        assert code == 0 and re.search(rf"Cluster +ok +default/kvm1 \(libvirt\): .*libvirt {re.escape(libvirt_version)}, "
                                       rf"{re.escape(qemu_version)}", text), text

        socket.unlink()
        code, out = await status("--json")
        report = json.loads(out)
        health = {c["name"]: c for c in report["probe"][0]["cluster_health"]}
        assert code == 1 and not report["healthy"] and not report["probe"][0]["ok"]
        assert not health["kvm-gone"]["ok"] and "cannot connect" in health["kvm-gone"]["error"], health
        assert health["kvm1"]["ok"] and health["c1"]["ok"]
        code, text = await status()
        assert code == 1 and re.search(r"Cluster +FAIL +default/kvm-gone \(libvirt\): .*cannot connect", text), text
    finally:
        remove_cluster_dir(endpoint)
