"""`ABDR_DEMO_LIBVIRT=true abdr up` boots a tiny real guest on this host's libvirt and
protects it: the guest runs and says so on its console, and the demo plan's backup,
restored, is a whole state of the guest's writes."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from drivers.libvirt import LibvirtDriver
from starter.stack.guest import pattern
from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir
from tests.test_stack import ABDR, Up, stack_env  # noqa: F401  (stack_env: the fixture)

pytestmark = pytest.mark.hypervisor


def abdr(env: dict[str, str], *args: str) -> dict | list:
    r = subprocess.run([ABDR, *args, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_up_with_the_libvirt_demo_boots_and_protects_a_guest(stack_env: dict[str, str]) -> None:  # noqa: F811
    demo_dir = fresh_cluster_dir()
    env = {**stack_env, "ABDR_DEMO_LIBVIRT": "true", "ABDR_DEMO_LIBVIRT_DIR": str(demo_dir)}
    up = Up(env)
    try:
        assert "libvirt demo seeded" in up.banner, up.banner
        [vm] = abdr(env, "vm", "list", "--cluster", "kvm")
        assert vm["config"]["name"] == "tiny" and vm["power_state"] == "RUNNING"  # type: ignore[index]
        console = demo_dir / "cluster" / "vms" / vm["id"] / "console.log"  # type: ignore[index]
        deadline = time.monotonic() + 240
        while not pattern.LOG.search(console.read_text(errors="replace") if console.exists() else ""):
            assert time.monotonic() < deadline, "the guest printed no write log on its console"
            time.sleep(0.2)
        run = abdr(env, "backup-plan", "run", "demo-kvm", "--wait")
        [result] = run["vms"]  # type: ignore[call-overload]
        assert run["result"] == "SUCCESS", run
        # The demo's 5-minute schedule may have fired between `abdr up` and this run (CI ran
        # into it): then this run is an incremental on the scheduled one. Either way the
        # plan's first point of the guest is a full.
        points = abdr(env, "restore-point", "list", "--plan", "demo-kvm")
        assert [p["type"] for p in points][:1] == ["FULL"], points  # type: ignore[index]
        assert result["type"] == "FULL" or len(points) >= 2, (result, points)
        abdr(env, "restore", result["point_id"], "--mode", "rebuild", "--new-name", "tiny-copy", "--wait")
        kvm = LibvirtDriver(f"qemu:///system#{demo_dir / 'cluster'}", "kvm")
        copy = kvm.find_vm("tiny-copy")
        assert copy is not None
        with kvm.open_disk(copy.id, "disk0") as h:
            check = pattern.check_image(h.read(0, h.size))
        assert check.ok and check.counter > 0, check
    finally:
        assert up.stop() == 0
        remove_cluster_dir(f"qemu:///system#{demo_dir / 'cluster'}")
        remove_cluster_dir(f"qemu:///system#{demo_dir}")
