"""Fixtures of the driver contract suite. Every test takes `driver` (a fresh driver on a
fresh cluster) and, when it needs other processes, `driver_spec` (a picklable recipe a child
process can open the same cluster with). They run on every driver of the registry
(drivers.DRIVERS); a new driver also says here where a test makes a fresh cluster of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from drivers import DRIVERS
from drivers.base import ClusterDriver

# Per driver: the endpoint of a fresh, empty cluster for one test (given its tmp_path).
FRESH_ENDPOINT: dict[str, Callable[[Path], str]] = {
    "local": lambda tmp_path: str(tmp_path / "cluster"),
}


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


@pytest.fixture(params=list(DRIVERS))
def driver_spec(request: pytest.FixtureRequest, tmp_path: Path) -> DriverSpec:
    fresh = FRESH_ENDPOINT.get(request.param)
    if fresh is None:
        pytest.fail(f"driver {request.param!r} is registered but has no FRESH_ENDPOINT here")
    return DriverSpec(request.param, fresh(tmp_path))


@pytest.fixture
def driver(driver_spec: DriverSpec) -> ClusterDriver:
    return driver_spec.open()
