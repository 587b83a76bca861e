"""Property test of the contract against an in-memory model: random writes, snapshots,
snapshot deletions and rollbacks; then every snapshot view, the live disk and the changed
extents between any two points must equal the model's, byte for byte and block for block."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import DRIVERS
from drivers.base import ClusterDriver, blocks_to_extents, extents_to_blocks
from tests.drivers.helpers import BS, blocks_of, make_vm, read_all

SIZE = 16 * BS + 8192  # partial last block on purpose
NBLOCKS = -(-SIZE // BS)
_names = itertools.count()

Op = tuple[str, int, int, int]
Phase = tuple[list[Op], Op]

write = st.tuples(st.just("write"), st.integers(0, SIZE - 1), st.integers(1, 3 * BS), st.integers(0, 2**32))
other = st.tuples(st.sampled_from(["snap", "snap", "delete", "rollback"]), st.integers(0, 9), st.just(0), st.just(0))
# phases of a few writes then one snapshot-level operation: keeps runs short but makes the
# interesting orders (write, snapshot, overwrite, delete a middle one, roll back) common
phase = st.tuples(st.lists(write, max_size=4), other)
program = st.lists(phase, min_size=1, max_size=8)


class Model:
    def __init__(self) -> None:
        self.live = bytearray(SIZE)
        self.t = 0
        self.log: list[tuple[int, set[int]]] = []  # (time, blocks written then)
        self.snaps: list[dict] = []  # type: ignore[type-arg]

    def tick(self) -> int:
        self.t += 1
        return self.t

    def written(self, t0: int, t1: float) -> set[int]:
        out: set[int] = set()
        for t, blocks in self.log:
            if t0 <= t < t1:
                out |= blocks
        return out


# Examples per run: each of a process-backed driver (libvirt: qemu-img and qemu-nbd per step;
# aoc: HTTP round trips to the simulator) costs tens of times a local one. Hypothesis draws
# new programs every run, so the runs of the suite add up to more than one run's count.
EXAMPLES = {"local": 100}
PROCESS_BACKED_EXAMPLES = 30
QUICK = sorted(EXAMPLES)
PROCESS_BACKED = sorted(set(DRIVERS) - set(QUICK))
SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@pytest.mark.parametrize("driver_spec", QUICK, indirect=True)
@settings(max_examples=EXAMPLES["local"], **SETTINGS)  # type: ignore[arg-type]
@given(ops=program)
def test_matches_model(driver: ClusterDriver, ops: list[Phase]) -> None:
    run_program(driver, ops)


@pytest.mark.parametrize("driver_spec", PROCESS_BACKED, indirect=True)
@settings(max_examples=PROCESS_BACKED_EXAMPLES, **SETTINGS)  # type: ignore[arg-type]
@given(ops=program)
def test_process_backed_driver_matches_model(driver: ClusterDriver, ops: list[Phase]) -> None:
    run_program(driver, ops)


def run_program(driver: ClusterDriver, ops: list[Phase]) -> None:
    vm = make_vm(driver, f"m{next(_names)}", ("disk0", SIZE))
    m = Model()
    for writes, last in ops:
        for kind, a, b, seed in [*writes, last]:
            if kind == "write":
                n = min(b, SIZE - a)
                payload = random.Random(seed).randbytes(n)
                driver.write(vm.id, "disk0", a, payload)
                m.live[a : a + n] = payload
                m.log.append((m.tick(), blocks_of(a, n)))
            elif kind == "snap":
                s = driver.create_snapshot(vm.id, f"s{m.t}")
                m.snaps.append({"id": s.id, "data": bytes(m.live), "t": m.tick()})
            elif kind == "delete" and m.snaps:
                s = m.snaps.pop(a % len(m.snaps))
                driver.delete_snapshot(vm.id, s["id"])
            elif kind == "rollback" and m.snaps:
                s = m.snaps[a % len(m.snaps)]
                driver.rollback(vm.id, s["id"])
                # a rollback rewrites exactly the blocks written since that snapshot
                m.log.append((m.tick(), {x for x in m.written(s["t"], float("inf")) if x < NBLOCKS}))
                m.live[:] = s["data"]
        check(driver, vm.id, m)
    driver.delete_vm(vm.id)


def check(driver: ClusterDriver, vm_id: str, m: Model) -> None:
    assert read_all(driver, vm_id) == m.live
    ids = [s["id"] for s in m.snaps]
    assert [s.id for s in driver.list_snapshots(vm_id)] == ids
    points = m.snaps + [{"id": None, "data": bytes(m.live), "t": float("inf")}]
    for i, s in enumerate(m.snaps):
        assert read_all(driver, vm_id, snap_id=s["id"]) == s["data"], f"view of snapshot #{i}"
        for later in points[i + 1 :]:
            got = driver.changed_extents(vm_id, "disk0", s["id"], later["id"])
            assert got == blocks_to_extents(m.written(s["t"], later["t"]), BS, SIZE)
        nonzero = {x // BS for x in range(0, SIZE, BS) if any(s["data"][x : x + BS])}
        assert nonzero <= extents_to_blocks(driver.allocated_extents(vm_id, "disk0", s["id"]), BS)
