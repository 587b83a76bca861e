"""Fixtures of the driver contract suite. Every test takes `driver` (a fresh driver on a
fresh cluster) and, when it needs other processes, `driver_spec` (a picklable recipe a child
process can open the same cluster with). New drivers (AOC simulator, libvirt) join by adding
a param to DRIVERS and a branch to DriverSpec.open."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from drivers.base import ClusterDriver

DRIVERS = ["local"]


@dataclass(frozen=True)
class DriverSpec:
    kind: str
    location: str
    cluster: str = "c1"

    def open(self) -> ClusterDriver:
        if self.kind == "local":
            from drivers.local import LocalDriver

            return LocalDriver(self.location, self.cluster)
        raise ValueError(f"unknown driver kind {self.kind!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, s: str) -> "DriverSpec":
        return cls(**json.loads(s))


@pytest.fixture(params=DRIVERS)
def driver_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DriverSpec]:
    if request.param == "local":
        yield DriverSpec("local", str(tmp_path / "cluster"))


@pytest.fixture
def driver(driver_spec: DriverSpec) -> ClusterDriver:
    return driver_spec.open()
