"""What a retry can fix is retried, what it cannot is not: transport faults injected on a
real server on loopback (a 5xx, a corrupted body, a wrong digest, a held lock), typed
transport errors, and bad input that fails an activity at once."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import as_application_error, translate_errors
from activities.replication import ReplicationActivities
from activities.resources import Resources
from drivers.base import ResourceLocked
from drivers.catalog.store import Catalog
from drivers.local import LocalDriver
from drivers.transport.client import (
    TransportClient,
    TransportError,
    TransportTransient,
    TransportUnreachable,
)
from drivers.transport.protocol import DIGEST_HEADER, ReadRequest
from drivers.transport.server import TransportServer, make_app
from models.inventory import Cluster, DiskSpec, Site, VMConfig
from models.replication_jobs import PullInput, VMAt
from tests.ports import free_port

TOKEN = "retry-test-token"
MiB = 1 << 20


class Faults:
    """ASGI middleware: the next reads fail as planned ("503", "body", "digest"), then
    the real app answers. `injected` says what was really done."""

    def __init__(self, app: Any) -> None:
        self.app, self.plan, self.injected = app, [], []  # type: ignore[var-annotated]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/read" or not self.plan:
            return await self.app(scope, receive, send)
        fault = self.plan.pop(0)
        self.injected.append(fault)
        if fault == "503":
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": "overloaded"}'})
            return None

        async def tamper(msg: dict) -> None:
            if fault == "digest" and msg["type"] == "http.response.start":
                msg = {**msg, "headers": [(k, b"0" * 64 if k.decode().lower() == DIGEST_HEADER.lower() else v)
                                          for k, v in msg["headers"]]}
            if fault == "body" and msg["type"] == "http.response.body" and msg.get("body"):
                body = bytearray(msg["body"])
                body[len(body) // 2] ^= 0xFF
                msg = {**msg, "body": bytes(body)}
            await send(msg)

        return await self.app(scope, receive, tamper)


class LockedAtFirst:
    """A driver whose disks are locked by another task for the first `n` opens."""

    def __init__(self, driver: LocalDriver, n: int) -> None:
        self.driver, self.n = driver, n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.driver, name)

    def open_disk(self, *args: Any, **kw: Any) -> Any:
        if self.n > 0:
            self.n -= 1
            raise ResourceLocked("disk d is locked by task t-1 (on purpose)")
        return self.driver.open_disk(*args, **kw)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[str, Faults, LockedAtFirst, LocalDriver, str, str, bytes]]:
    """A served snapshot: (url, faults, lock, driver, vm id, snapshot id, its bytes)."""
    driver = LocalDriver(tmp_path / "src", "a")
    vm = driver.create_vm(VMConfig(name="v", disks=[DiskSpec(name="disk0", size_bytes=2 * MiB)]))
    data = random.Random(5).randbytes(2 * MiB)
    with driver.open_disk(vm.id, "disk0", writable=True) as h:
        h.write(0, data)
    snap = driver.create_snapshot(vm.id, "s1").id
    lock = LockedAtFirst(driver, 0)
    faults = Faults(make_app(lambda name: lock, TOKEN, "src"))
    port = free_port()
    server = TransportServer(faults, "127.0.0.1", port).start()  # type: ignore[arg-type]
    try:
        yield f"http://127.0.0.1:{port}", faults, lock, driver, vm.id, snap, data
    finally:
        server.stop()


def read_all(url: str, vm_id: str, snap: str, retries: int = 5) -> bytes:
    client = TransportClient(url, TOKEN, retries=retries)
    try:
        return client.read(ReadRequest(cluster="a", vm_id=vm_id, disk="disk0", snapshot_id=snap,
                                       extents=[(0, 2 * MiB)]))
    finally:
        client.close()


def test_transient_read_faults_are_retried_and_the_data_is_exact(source: Any) -> None:
    url, faults, lock, _, vm_id, snap, data = source
    faults.plan = ["503", "body", "digest"]
    lock.n = 1  # the fourth answer: the disk is locked (HTTP 423, not a 400 refusal)
    assert read_all(url, vm_id, snap) == data
    assert faults.injected == ["503", "body", "digest"] and lock.n == 0


@pytest.mark.parametrize("fault", ["503", "body", "digest", "locked"])
def test_a_lasting_transient_fault_is_raised_typed_and_retryable(source: Any, fault: str) -> None:
    url, faults, lock, _, vm_id, snap, _ = source
    if fault == "locked":
        lock.n = 10
    else:
        faults.plan = [fault] * 10
    with pytest.raises(TransportTransient) as err:
        read_all(url, vm_id, snap, retries=2)
    assert not as_application_error(err.value).non_retryable
    assert len(faults.injected) == 3 or lock.n == 7  # the first try and two retries


def test_refusals_are_not_retried(source: Any) -> None:
    url, _, _, _, vm_id, snap, _ = source
    with pytest.raises(TransportError, match="HTTP 401") as err:
        TransportClient(url, "wrong").read(ReadRequest(cluster="a", vm_id=vm_id, disk="disk0", snapshot_id=snap,
                                                       extents=[(0, MiB)]))
    assert not isinstance(err.value, (TransportTransient, TransportUnreachable))
    assert as_application_error(err.value).non_retryable


def test_an_unreachable_site_is_retryable() -> None:
    client = TransportClient(f"http://127.0.0.1:{free_port()}", TOKEN, retries=1)
    with pytest.raises(TransportUnreachable) as err:
        client.read(ReadRequest(cluster="a", vm_id="v", disk="d", snapshot_id="s", extents=[(0, 1)]))
    assert not as_application_error(err.value).non_retryable


def test_a_pull_survives_transient_faults(source: Any, tmp_path: Path) -> None:
    """The whole activity: a corrupted read and a 5xx do not fail the pull; the replica
    holds exactly the snapshot's bytes."""
    url, faults, _, _, vm_id, snap, data = source
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.add_site(Site(name="dr"))
    catalog.add_site(Site(name="src"))
    catalog.set_site_transport("src", url)
    catalog.add_cluster(Cluster(name="b", site="dr", driver="local", endpoint=str(tmp_path / "b")))
    res = Resources(catalog, "dr")
    local = res.driver("b")
    replica = local.create_vm(VMConfig(name="r", disks=[DiskSpec(name="disk0", size_bytes=len(data))]))
    faults.plan = ["body", "503"]
    ActivityEnvironment().run(ReplicationActivities(res, TOKEN).pull_extents, PullInput(
        remote_site="src", remote=VMAt(cluster="a", vm_id=vm_id, snapshot_id=snap), local=VMAt(cluster="b",
                                                                                               vm_id=replica.id)))
    assert faults.injected == ["body", "503"]
    with local.open_disk(replica.id, "disk0") as h:
        assert h.read(0, h.size) == data
    catalog.close()


class Request(BaseModel):
    size: int


@pytest.mark.parametrize("bad", [lambda: Request.model_validate({"size": "big"}), lambda: {}["missing"],
                                 lambda: int("twelve")])
def test_bad_input_fails_an_activity_at_once(bad: Any) -> None:
    """Validation, key and value errors are typed and non-retryable (they were retried)."""

    @translate_errors
    def act() -> None:
        bad()

    with pytest.raises(ApplicationError) as err:
        act()
    assert err.value.non_retryable and err.value.type in ("ValidationError", "KeyError", "ValueError")
    assert isinstance(err.value.__cause__, (ValidationError, KeyError, ValueError))


def test_a_lock_stays_retryable() -> None:
    assert not as_application_error(ResourceLocked("busy")).non_retryable
