"""The cross-site transport on a real server on loopback: token auth, byte-exact reads of
snapshots and of changed extents, request batching, and TLS with a CA the client trusts."""

from __future__ import annotations

import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.local import LocalDriver
from drivers.transport.client import TransportClient, TransportError, batches
from drivers.transport.protocol import MAX_READ_BYTES, ExtentsRequest, ReadRequest
from drivers.transport.server import TransportServer, make_app
from models.inventory import DiskSpec, VMConfig
from tests.ports import free_port

TOKEN = "t0ken"
MiB = 1 << 20



@pytest.fixture
def cluster(tmp_path: Path) -> LocalDriver:
    return LocalDriver(tmp_path / "c", "c")


def serve(driver: LocalDriver, **tls: Path) -> tuple[TransportServer, int]:
    port = free_port()
    server = TransportServer(make_app(lambda name: driver, TOKEN, "a"), "127.0.0.1", port, **tls).start()
    return server, port


@pytest.fixture
def http_server(cluster: LocalDriver) -> Iterator[str]:
    server, port = serve(cluster)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_reads_changed_extents_exactly(cluster: LocalDriver, http_server: str) -> None:
    vm = cluster.create_vm(VMConfig(name="v", disks=[DiskSpec(name="d", size_bytes=4 * MiB)]))
    rng = random.Random(1)
    with cluster.open_disk(vm.id, "d", writable=True) as h:
        h.write(0, rng.randbytes(4 * MiB))
    s1 = cluster.create_snapshot(vm.id, "s1")
    with cluster.open_disk(vm.id, "d", writable=True) as h:
        for _ in range(20):
            h.write(rng.randrange(0, 4 * MiB - 8192, 4096), rng.randbytes(8192))
    s2 = cluster.create_snapshot(vm.id, "s2")
    client = TransportClient(http_server, TOKEN)
    reply = client.extents(ExtentsRequest(cluster="c", vm_id=vm.id, disk="d", snapshot_id=s2.id, base_snapshot_id=s1.id))
    assert reply.extents == [(e.offset, e.length) for e in cluster.changed_extents(vm.id, "d", s1.id, s2.id)]
    for batch in batches(reply.extents, limit=256 << 10):
        data = client.read(ReadRequest(cluster="c", vm_id=vm.id, disk="d", snapshot_id=s2.id, extents=batch))
        expected = b"".join(cluster.read(vm.id, "d", off, n, s2.id) for off, n in batch)
        assert data == expected
    assert 0 < client.wire_bytes


def test_refuses_a_wrong_token_and_oversized_reads(cluster: LocalDriver, http_server: str) -> None:
    vm = cluster.create_vm(VMConfig(name="v", disks=[DiskSpec(name="d", size_bytes=16 * MiB)]))
    snap = cluster.create_snapshot(vm.id, "s")
    with pytest.raises(TransportError, match="HTTP 401"):
        TransportClient(http_server, "wrong").extents(
            ExtentsRequest(cluster="c", vm_id=vm.id, disk="d", snapshot_id=snap.id))
    with pytest.raises(TransportError, match=f"at most {MAX_READ_BYTES} bytes"):
        TransportClient(http_server, TOKEN).read(
            ReadRequest(cluster="c", vm_id=vm.id, disk="d", snapshot_id=snap.id, extents=[(0, 16 * MiB)]))
    with pytest.raises(TransportError, match="HTTP 404"):
        TransportClient(http_server, TOKEN).extents(ExtentsRequest(cluster="c", vm_id="vm-nope", disk="d",
                                                                   snapshot_id="x"))


def test_unreachable_site_is_reported_as_such() -> None:
    client = TransportClient(f"http://127.0.0.1:{free_port()}", TOKEN, retries=1)
    with pytest.raises(TransportError, match="unreachable"):
        client.extents(ExtentsRequest(cluster="c", vm_id="v", disk="d", snapshot_id="s"))


@given(st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(1, 3 * MiB)), max_size=30),
       st.integers(4096, 4 * MiB))
def test_batches_cover_extents_in_order_within_the_limit(extents: list[tuple[int, int]], limit: int) -> None:
    out = list(batches(extents, limit))
    assert all(0 < sum(n for _, n in b) <= limit for b in out)
    flat = [e for b in out for e in b]
    # The pieces are the requested extents cut at batch limits: same bytes, same order.
    pieces = iter(flat)
    for off, n in extents:
        covered = 0
        while covered < n:
            p_off, p_n = next(pieces)
            assert p_off == off + covered
            covered += p_n
        assert covered == n
    assert next(pieces, None) is None


def test_tls_with_a_trusted_ca(cluster: LocalDriver, tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server, port = serve(cluster, certfile=cert, keyfile=key)
    try:
        url = f"https://127.0.0.1:{port}"
        assert TransportClient(url, TOKEN, ca=cert).health() == {"ok": True, "site": "a"}
        with pytest.raises(httpx.ConnectError):  # a server the client has no reason to trust
            TransportClient(url, TOKEN).health()
    finally:
        server.stop()
