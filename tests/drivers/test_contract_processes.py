"""The contract across real processes: two writers snapshotting one VM at once, racing VM
creation, and a writer killed with SIGKILL at an arbitrary point. Children run
tests/drivers/workers.py; every state they reach can be recomputed here, so each
snapshot's view is checked byte for byte."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from drivers.base import ClusterDriver, extents_to_blocks
from tests.drivers.conftest import DriverSpec
from tests.drivers.helpers import BS, diff_blocks, make_vm, read_all
from tests.drivers.workers import read_progress, states, step_writes

ROOT = Path(__file__).resolve().parents[2]
SIZE = 32 * BS


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.drivers.workers", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# Hang guards, not speed limits: on the aoc driver each step is several HTTP round trips to
# the simulator, which on a loaded 2-core CI machine took past two minutes for 80 steps.
HANG_GUARD_S = 600


def finish(p: subprocess.Popen[str], timeout: float = HANG_GUARD_S) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return out


def check_cbt_covers_differences(driver: ClusterDriver, vm_id: str) -> None:
    """Between consecutive snapshots (and the newest and live), every block whose content
    differs is in changed_extents."""
    snaps = driver.list_snapshots(vm_id)
    views = [read_all(driver, vm_id, snap_id=s.id) for s in snaps] + [read_all(driver, vm_id)]
    ids = [s.id for s in snaps] + [None]
    for i in range(len(snaps)):
        changed = extents_to_blocks(driver.changed_extents(vm_id, "disk0", ids[i], ids[i + 1]), BS)
        assert diff_blocks(views[i], views[i + 1]) <= changed


def test_two_processes_write_and_snapshot_one_vm(driver: ClusterDriver, driver_spec: DriverSpec, tmp_path: Path) -> None:
    vm = make_vm(driver, "shared", ("disk0", SIZE))
    half, steps = SIZE // 2, 40  # 10 snapshots a writer: enough to interleave, half the time of 80 on the AOC
    regions = {"a": (11, 0, half), "b": (22, half, SIZE)}  # tag: (seed, lo, hi)
    procs = [
        spawn("writer", driver_spec.to_json(), vm.id, str(seed), str(lo), str(hi), tag, str(steps), "4", "9",
              str(tmp_path / f"progress-{tag}"), str(tmp_path / "go"), str(tmp_path / f"progress-{peer}"))
        for (tag, (seed, lo, hi)), peer in zip(regions.items(), ["b", "a"])
    ]
    # Both start at once and go in lockstep (each starts step k once the other started k-1):
    # on a loaded machine one writer could otherwise finish before the other began.
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.ready-{t}").exists() for t in regions) and time.monotonic() < deadline:
        time.sleep(0.001)
    (tmp_path / "go").touch()
    for p in procs:
        finish(p)

    every = {tag: {st: k for k, st in enumerate(states(seed, lo, hi, steps))} for tag, (seed, lo, hi) in regions.items()}
    snaps = driver.list_snapshots(vm.id)
    assert len(snaps) >= 10 and {s.name[0] for s in snaps} == {"a", "b"}
    mid = 0
    for s in snaps:
        view = read_all(driver, vm.id, snap_id=s.id)
        tag, k = s.name.split("-")
        for t, (seed, lo, hi) in regions.items():
            got = every[t].get(view[lo:hi])
            assert got is not None, f"{s.name}: region {t} is not a state writer {t} ever had"
            if t == tag:
                assert got == int(k), f"{s.name}: own region shows step {got}"
            else:
                mid += 0 < got < steps
    assert mid, "no snapshot caught the other writer mid-way: the processes did not overlap"
    live = read_all(driver, vm.id)
    for t, (seed, lo, hi) in regions.items():
        assert every[t][live[lo:hi]] == steps
    check_cbt_covers_differences(driver, vm.id)


def test_racing_creates_keep_names_unique(driver: ClusterDriver, driver_spec: DriverSpec) -> None:
    procs = [spawn("create", driver_spec.to_json(), "race", "15") for _ in range(2)]
    won = [json.loads(finish(p)) for p in procs]
    assert sorted(won[0] + won[1]) == list(range(15))  # each name created exactly once
    names = [v.name for v in driver.list_vms()]
    assert sorted(names) == sorted(f"race{i}" for i in range(15))


def test_sigkill_mid_writes_leaves_every_snapshot_intact(driver_spec: DriverSpec, tmp_path: Path) -> None:
    rng = random.Random(5)
    for round_ in range(4):
        driver = driver_spec.open()
        vm = make_vm(driver, f"victim{round_}", ("disk0", SIZE))
        seed, progress = 100 + round_, str(tmp_path / f"progress{round_}")
        p = spawn("writer", driver_spec.to_json(), vm.id, str(seed), "0", str(SIZE), "w", "1000000", "3", "7",
                  progress)
        target = rng.randint(15, 120)
        deadline = time.monotonic() + HANG_GUARD_S
        while read_progress(progress) < target and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(rng.random() * 0.01)
        os.kill(p.pid, signal.SIGKILL)
        try:  # its pipes close only when nothing it started still holds them
            p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("something the killed writer started outlived it, holding its pipes") from None
        assert p.returncode == -signal.SIGKILL, "the writer should still have been running"
        k = read_progress(progress)
        assert k >= target

        driver = driver_spec.open()  # as after a restart
        all_states = list(states(seed, 0, SIZE, k))
        snaps = driver.list_snapshots(vm.id)
        assert snaps, "some snapshots were taken before the kill"
        views = {}
        for s in snaps:
            n = int(s.name.split("-")[1])
            views[s.id] = read_all(driver, vm.id, snap_id=s.id)
            assert views[s.id] == all_states[n], f"round {round_}: snapshot {s.name} after kill at step {k}"
        # live: every 4 KiB page is from before or after the interrupted step k
        live = read_all(driver, vm.id)
        for off in range(0, SIZE, 4096):
            assert live[off : off + 4096] in (all_states[k - 1][off : off + 4096], all_states[k][off : off + 4096])
        check_cbt_covers_differences(driver, vm.id)

        # the cluster is fully usable afterwards, and the old views stay put
        with driver.open_disk(vm.id, "disk0", writable=True) as w:
            for j in range(1, 6):
                w.write_many(step_writes(seed + 1, j, 0, SIZE))
        driver.create_snapshot(vm.id, "after")
        driver.delete_snapshot(vm.id, snaps[len(snaps) // 2].id)
        driver.write(vm.id, "disk0", 0, b"x" * 3 * BS)
        for s in driver.list_snapshots(vm.id):
            if s.id in views:
                assert read_all(driver, vm.id, snap_id=s.id) == views[s.id]
        check_cbt_covers_differences(driver, vm.id)
