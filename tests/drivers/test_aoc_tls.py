"""The AOC driver over HTTPS: the simulator serves a certificate this test's CA signed; the
driver trusts it through the CA file the user names (ABDR_AOC_CA_FILE, or the AOC's entry in
ABDR_AOC_SECRETS_FILE) and refuses, at once and saying why, a certificate no named CA signed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.aoc import AocDriver
from drivers.aoc.driver import probe_endpoint
from drivers.base import DriverError
from models.inventory import DiskSpec, VMConfig
from tests.drivers.aoc_sim import SimProcess
from tests.drivers.tls_certs import make_ca, make_server_cert


@pytest.fixture(scope="module")
def tls_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimProcess, Path, Path]]:
    d = tmp_path_factory.mktemp("aoc-tls")
    ca, ca_key, ca_cert = make_ca(d, "test-aoc-ca")
    other, _, _ = make_ca(d, "some-other-ca")
    cert, key = make_server_cert(d, ca_key, ca_cert)
    sim = SimProcess("--tls-cert", str(cert), "--tls-key", str(key), ca_file=str(ca))
    sim.ensure()
    try:
        yield sim, ca, other
    finally:
        sim.stop()


def test_the_named_ca_is_trusted(tls_sim: tuple[SimProcess, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    sim, ca, _ = tls_sim
    endpoint = sim.fresh_cluster()
    assert endpoint.startswith("https://127.0.0.1:")
    monkeypatch.setenv("ABDR_AOC_CA_FILE", str(ca))
    d = AocDriver(endpoint, "tls1")
    vm = d.create_vm(VMConfig(name="tls-vm", disks=[DiskSpec(name="disk0", size_bytes=1 << 20)]))
    assert [v.id for v in d.list_vms()] == [vm.id]
    d.write(vm.id, "disk0", 4096, b"over https" * 10)
    assert d.read(vm.id, "disk0", 4096, 100) == b"over https" * 10
    assert "cluster" in probe_endpoint(endpoint, "tls1")[0]


def test_a_ca_in_the_secrets_entry_is_trusted(tls_sim: tuple[SimProcess, Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sim, ca, other = tls_sim
    endpoint = sim.fresh_cluster()
    secrets = tmp_path / "aoc.json"
    secrets.write_text(json.dumps({sim.url: {"username": "root", "password": "root", "ca_file": str(ca)}}))
    monkeypatch.setenv("ABDR_AOC_SECRETS_FILE", str(secrets))
    monkeypatch.setenv("ABDR_AOC_CA_FILE", str(other))  # the AOC's own entry wins
    assert AocDriver(endpoint, "tls2").list_vms() == []


@pytest.mark.parametrize("trust", ["other-ca", "system"])
def test_an_unknown_ca_is_refused_with_the_reason(tls_sim: tuple[SimProcess, Path, Path], trust: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    sim, _, other = tls_sim
    endpoint = sim.fresh_cluster()
    if trust == "other-ca":
        monkeypatch.setenv("ABDR_AOC_CA_FILE", str(other))
    else:
        monkeypatch.delenv("ABDR_AOC_CA_FILE", raising=False)
    d = AocDriver(endpoint, "tls3")
    d.c.retry_s = 3600.0  # a refusal must not be retried as an outage: this would hang, not pass
    with pytest.raises(DriverError) as e:
        d.list_vms()
    msg = str(e.value)
    assert "TLS certificate is not trusted" in msg and sim.url in msg, msg
    assert (str(other) if trust == "other-ca" else "ABDR_AOC_CA_FILE") in msg, msg


def test_an_unreadable_ca_file_is_a_clear_error(tls_sim: tuple[SimProcess, Path, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    sim, _, _ = tls_sim
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("this is not a certificate")
    for path in (bad, tmp_path / "missing.pem"):
        monkeypatch.setenv("ABDR_AOC_CA_FILE", str(path))
        with pytest.raises(DriverError, match=f"the CA file {path} .*is not a readable PEM certificate"):
            AocDriver(f"{sim.url}#c1", "tls4")
