"""The driver registry: its drivers are names the models know, each runs the contract
suite, and a cluster is checked against it before the catalog knows the cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers import DRIVERS, check_cluster, join_cluster_id
from drivers.base import DriverError, Unsupported
from models.inventory import DRIVER_NAMES, Cluster
from tests.drivers.conftest import FRESH_ENDPOINT


def test_every_registered_driver_is_a_known_name_and_runs_the_contract_suite() -> None:
    assert set(DRIVERS) <= set(DRIVER_NAMES), "add the name to models.inventory.DRIVER_NAMES"
    assert set(FRESH_ENDPOINT) == set(DRIVERS)


def test_a_cluster_of_a_driver_not_implemented_is_refused() -> None:
    assert set(DRIVER_NAMES) == set(DRIVERS)  # every name the models know is implemented now
    # a catalog row of a driver this abdr lacks (written by another version: the model would refuse it)
    stray = Cluster.model_construct(name="x", site="s1", driver="vmware", endpoint="https://vc.example")
    with pytest.raises(Unsupported, match="'vmware', which is not implemented; abdr has: local, libvirt, aoc"):
        check_cluster(stray)


def test_a_local_cluster_needs_an_abdr_or_empty_directory(tmp_path: Path) -> None:
    check_cluster(Cluster(name="new", site="s1", endpoint=str(tmp_path / "new")))
    assert not (tmp_path / "new").exists(), "a check changes nothing"
    (tmp_path / "etc" / "passwd").parent.mkdir()
    (tmp_path / "etc" / "passwd").write_text("root")
    with pytest.raises(DriverError, match="not empty and is not an abdr cluster"):
        check_cluster(Cluster(name="etc", site="s1", endpoint=str(tmp_path / "etc")))
    with pytest.raises(DriverError, match="'bare' has no endpoint"):
        check_cluster(Cluster(name="bare", site="s1"))


def test_an_aoc_endpoint_names_its_cluster_id() -> None:
    assert join_cluster_id("aoc", "https://aoc.example", "c123") == "https://aoc.example#c123"
    assert join_cluster_id("local", "/x", None) == "/x"
    with pytest.raises(DriverError, match="names a cluster id already"):
        join_cluster_id("aoc", "https://aoc.example#c1", "c2")
    with pytest.raises(DriverError, match="takes no cluster id"):
        join_cluster_id("libvirt", "qemu:///system", "c2")
    with pytest.raises(DriverError, match="names no AOC cluster id"):
        check_cluster(Cluster(name="a", site="s1", driver="aoc", endpoint="https://aoc.example"))
    with pytest.raises(DriverError, match="is not https://HOST"):
        check_cluster(Cluster(name="a", site="s1", driver="aoc", endpoint="ftp://aoc.example#c1"))
