"""The aoc driver under the AOC simulator's injected faults (a separate simulator process:
tests/drivers/aoc_sim.py): each one ends in a retry that succeeds or a clear DriverError,
never a half result (a snapshot listed that its task did not make, a VM half created)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.aoc.client import AocClient
from drivers.aoc.driver import AocDriver, probe_endpoint
from drivers.aoc.endpoint import Credentials
from drivers.base import ANSWER_WITHIN, ClusterUnreachable, DriverError, NotFound, OperationTimeout
from models.inventory import PowerState
from tests.drivers.aoc_sim import SIM
from tests.drivers.helpers import BS, data, make_vm, read_all
from tests.ports import free_port


@pytest.fixture
def aoc() -> Iterator[AocDriver]:
    ep = SIM.fresh_cluster()
    try:
        yield AocDriver(ep, "c1")
    finally:
        SIM.admin("/sim/faults/clear", {})
        SIM.remove_cluster(ep)


def fault(kind: str, op: str, count: int = 1, **kw: object) -> None:
    SIM.admin("/sim/faults", {"kind": kind, "op": op, "count": count, **kw})


def test_resource_locked_and_500s_are_retried(aoc: AocDriver) -> None:
    fault("locked", "create-vm", 3)
    vm = make_vm(aoc, "v1")
    fault("error-500", "get-vms", 2)
    assert [v.id for v in aoc.list_vms()] == [vm.id]
    aoc.write(vm.id, "disk0", 0, data(1, BS))
    s1 = aoc.create_snapshot(vm.id, "s1")
    fault("error-500", "get-volume-extents", 2)
    assert [(e.offset, e.length) for e in aoc.allocated_extents(vm.id, "disk0", s1.id)] == [(0, BS)]
    fault("locked", "acquire-write-lease", 2)
    aoc.write(vm.id, "disk0", BS, data(2, BS))
    assert read_all(aoc, vm.id)[: 2 * BS] == data(1, BS) + data(2, BS)


def test_a_failed_task_is_a_clear_error_and_leaves_nothing_half_made(aoc: AocDriver) -> None:
    vm = make_vm(aoc, "v1")
    fault("task-fail", "create-vm-snapshot", message="the storage refused the snapshot")
    with pytest.raises(DriverError, match="create-vm-snapshot failed.*the storage refused the snapshot"):
        aoc.create_snapshot(vm.id, "s1")
    assert aoc.list_snapshots(vm.id) == []
    assert aoc.create_snapshot(vm.id, "s1").name == "s1"  # the name was not taken by the failed one
    fault("task-fail", "create-vm")
    with pytest.raises(DriverError, match="create-vm failed"):
        make_vm(aoc, "v2")
    assert aoc.find_vm("v2") is None and [v.name for v in aoc.list_vms()] == ["v1"]


def test_a_stuck_task_times_out_clearly_then_finishes(aoc: AocDriver) -> None:
    vm = aoc.power_on(make_vm(aoc, "v1").id)
    fault("task-stuck", "shutdown-vm")
    with pytest.raises(OperationTimeout, match=r"shutdown-vm did not end within 1s .*EXECUTING"):
        aoc.shutdown(vm.id, timeout_s=1)
    assert aoc.get_vm(vm.id).power_state == PowerState.RUNNING
    SIM.admin("/sim/faults/clear", {})
    for _ in range(200):
        if aoc.get_vm(vm.id).power_state == PowerState.STOPPED:
            break
        time.sleep(0.05)
    assert aoc.get_vm(vm.id).power_state == PowerState.STOPPED


def test_a_guest_that_ignores_shutdown(aoc: AocDriver) -> None:
    vm = aoc.power_on(make_vm(aoc, "v1").id)
    SIM.admin("/sim/vms/guest", {"vm_id": vm.id, "refuse_shutdown": True})
    with pytest.raises(OperationTimeout, match="did not shut down"):
        aoc.shutdown(vm.id, timeout_s=5)
    assert aoc.get_vm(vm.id).power_state == PowerState.RUNNING
    assert aoc.power_off(vm.id).power_state == PowerState.STOPPED


def test_expired_tokens_mean_a_new_login(aoc: AocDriver) -> None:
    make_vm(aoc, "v1")
    SIM.admin("/sim/expire-tokens", {})
    assert [v.name for v in aoc.list_vms()] == ["v1"]


def test_a_slow_answer_past_the_client_timeout_is_asked_again(aoc: AocDriver) -> None:
    c = AocClient(aoc.base_url, Credentials("root", "root"), timeout_s=0.5)
    fault("slow", "get-clusters", delay_s=2.0)
    assert c.read("get-clusters", {"id": aoc.cluster_id})[0]["id"] == aoc.cluster_id


def test_wrong_credentials_and_an_aoc_that_is_down(aoc: AocDriver) -> None:
    with pytest.raises(DriverError, match="login as 'root' failed: username, password or source is wrong"):
        AocClient(aoc.base_url, Credentials("root", "nope")).read("get-clusters", {})
    port = free_port()  # nothing listens there
    with pytest.raises(ClusterUnreachable, match=f"AOC http://127.0.0.1:{port} does not answer /v2/api/get-vms"):
        AocClient(f"http://127.0.0.1:{port}", Credentials("root", "root"), retry_s=1.0).read("get-vms", {})
    # A caller that needs an answer soon (a DR probe) is told at its own patience, not the client's.
    patience = ANSWER_WITHIN.set(0.0)
    try:
        with pytest.raises(ClusterUnreachable, match="does not answer"):
            AocClient(f"http://127.0.0.1:{port}", Credentials("root", "root")).read("get-vms", {})
    finally:
        ANSWER_WITHIN.reset(patience)


def test_status_probe_and_credentials_kept_out_of_sight(aoc: AocDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    ep = f"{aoc.base_url}#{aoc.cluster_id}"
    what, versions = probe_endpoint(ep, "c1")
    assert what.startswith(f"AOC {aoc.base_url}, cluster t-") and aoc.cluster_id in what
    assert versions == {"cluster": "simulator"}
    assert "root" not in repr(aoc.c.creds).replace("username='root'", "")  # the password is not in its repr
    with pytest.raises(NotFound, match="has no cluster"):
        probe_endpoint(f"{aoc.base_url}#nosuch", "c1")
    monkeypatch.delenv("ABDR_AOC_PASSWORD")
    with pytest.raises(DriverError, match="set ABDR_AOC_USERNAME and ABDR_AOC_PASSWORD"):
        AocDriver(ep, "c1")


def test_the_simulator_says_it_is_one() -> None:
    SIM.ensure()
    out = subprocess.run([sys.executable, "-m", "starter.cli", "aoc-sim", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], check=True).stdout
    assert "SIMULATOR (not a real AOC)" in out
    assert "simulator" in SIM.log_tail() and "not a real AOC" in SIM.log_tail()
