"""Fixtures of the driver contract suite. Every test takes `driver` (a fresh driver on a
fresh cluster) and, when it needs other processes, `driver_spec` (a picklable recipe a child
process can open the same cluster with). They run on every driver of the registry
(drivers.DRIVERS); a new driver also says here where a test makes a fresh cluster of it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from drivers import DRIVERS
from drivers.base import ClusterDriver

# Per driver: the endpoint of a fresh, empty cluster for one test (given its tmp_path).
FRESH_ENDPOINT: dict[str, Callable[[Path], str]] = {
    "local": lambda tmp_path: str(tmp_path / "cluster"),
    "libvirt": lambda tmp_path: libvirt_cluster(tmp_path),
    "aoc": lambda tmp_path: aoc_cluster(),
}


# Per driver: does a new VM (blank disks) stop on a graceful shutdown? local's simulated
# guest does; a real QEMU VM booting nothing cannot (tests/hypervisor proves the ACPI path
# with a real guest), so the suite checks OperationTimeout there (docs/driver-contract.md).
BLANK_GUEST_ANSWERS_SHUTDOWN: dict[str, bool] = {"local": True, "libvirt": False, "aoc": True}


def libvirt_cluster(tmp_path: Path) -> str:
    """A fresh disk directory on this host's libvirt (QEMU, running as libvirt-qemu, must
    reach it: pytest's tmp_path cannot be it), with the networks the suite's VMs name."""
    from tests.hypervisor.bed import fresh_cluster_dir, require_networks

    require_networks("vlan-prod", "vlan-dr", "vlan-test")
    return f"qemu:///system#{fresh_cluster_dir(tmp_path)}"


def aoc_cluster() -> str:
    """A fresh cluster in the session's AOC simulator (a separate process: tests/drivers/aoc_sim.py)."""
    from tests.drivers.aoc_sim import SIM

    return SIM.fresh_cluster()


def _remove_aoc_cluster(endpoint: str) -> None:
    from tests.drivers.aoc_sim import SIM

    SIM.remove_cluster(endpoint)


@pytest.fixture(scope="session", autouse=True)
def _stop_aoc_simulator() -> Iterator[None]:
    yield
    from tests.drivers.aoc_sim import SIM

    SIM.stop()


@dataclass(frozen=True)
class DriverSpec:
    kind: str
    location: str
    cluster: str = "c1"

    def open(self) -> ClusterDriver:
        return DRIVERS[self.kind].open(self.location, self.cluster)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> "DriverSpec":
        return cls(**json.loads(s))


def _remove_libvirt_cluster(endpoint: str) -> None:
    from tests.hypervisor.bed import remove_cluster_dir

    remove_cluster_dir(endpoint)


# Per driver: what a test's cluster leaves outside its tmp_path, removed after the test.
CLEANUP: dict[str, Callable[[str], None]] = {"libvirt": _remove_libvirt_cluster, "aoc": _remove_aoc_cluster}


@pytest.fixture(params=list(DRIVERS))
def driver_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverSpec]:
    fresh = FRESH_ENDPOINT.get(request.param)
    if fresh is None:
        pytest.fail(f"driver {request.param!r} is registered but has no FRESH_ENDPOINT here")
    spec = DriverSpec(request.param, fresh(tmp_path))
    try:
        yield spec
    finally:
        if request.param in CLEANUP:
            CLEANUP[request.param](spec.location)


@pytest.fixture
def driver(driver_spec: DriverSpec) -> ClusterDriver:
    return driver_spec.open()
