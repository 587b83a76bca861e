"""The real libvirt/QEMU test bed (issue 10). These tests need what scripts/ensure-hypervisor.sh
installs and starts; `make test` runs it first, so they run with the rest of the suite (and
fail, never skip, where the test bed is missing). Alone:

    bash scripts/ensure-hypervisor.sh .venv
    pytest -q -p no:cacheprovider -m hypervisor
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def conn() -> Iterator[object]:
    try:
        import libvirt
    except ImportError as e:
        raise RuntimeError("no libvirt bindings in this Python: run scripts/ensure-hypervisor.sh .venv") from e
    from tests.guest.domain import URI

    c = libvirt.open(URI)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="session")
def image() -> object:
    from starter.stack.guest.initramfs import build_guest
    from tests.guest.domain import ROOT

    return build_guest(ROOT / "cache")


@pytest.fixture(scope="session")
def agent_image() -> object:
    """The tiny guest with the QEMU guest agent (it runs where the domain has the channel)."""
    from starter.stack.guest.initramfs import build_guest
    from tests.guest.domain import ROOT

    return build_guest(ROOT / "cache", agent=True)


@pytest.fixture
def wd(conn: object) -> Iterator[Path]:
    from tests.guest.domain import workdir

    with workdir(conn) as d:  # type: ignore[arg-type]
        yield d


@pytest.fixture
def cluster() -> Iterator[object]:
    """A libvirt cluster `c1` of abdr's driver in a fresh directory; its domains and files
    are removed afterwards."""
    from drivers.libvirt import LibvirtDriver
    from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir

    endpoint = f"qemu:///system#{fresh_cluster_dir()}"
    try:
        yield LibvirtDriver(endpoint, "c1")
    finally:
        remove_cluster_dir(endpoint)
