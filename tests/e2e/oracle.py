"""Independent oracles for end-to-end tests: the bytes a source disk had at the moment of
a point, captured by the test itself before it changed anything, and the checks that a
restore or a replica holds exactly those bytes. Never compare against abdr's own output."""

from __future__ import annotations

from collections.abc import Iterable

from drivers.base import ClusterDriver
from models.inventory import Extent
from models.requests import RestoreMode, RestoreRequest
from starter.client import AbdrClient

Image = dict[str, bytes]  # disk name -> the disk's bytes


def read_disk(driver: ClusterDriver, vm_name: str, disk: str = "disk0", snap_id: str | None = None) -> bytes:
    vm = driver.find_vm(vm_name)
    assert vm is not None, f"no VM {vm_name!r}"
    with driver.open_disk(vm.id, disk, snap_id) as h:
        return h.read(0, h.size)


def capture(driver: ClusterDriver, vm_name: str) -> Image:
    """Every disk of the VM as it is now: the oracle of a point taken before the next write."""
    vm = driver.find_vm(vm_name)
    assert vm is not None, f"no VM {vm_name!r}"
    return {d.name: read_disk(driver, vm_name, d.name) for d in vm.config.disks}


def assert_same_bytes(actual: bytes, expected: bytes, what: str) -> None:
    """Byte-exact, with a message that names the first differing offset (never dumps data)."""
    if actual == expected:
        return
    if len(actual) != len(expected):
        raise AssertionError(f"{what}: {len(actual)} bytes, expected {len(expected)}")
    first = next(i for i, (a, b) in enumerate(zip(actual, expected)) if a != b)
    raise AssertionError(f"{what}: differs from the oracle first at byte {first}")


def assert_image(driver: ClusterDriver, vm_name: str, expected: Image, what: str = "") -> None:
    vm = driver.find_vm(vm_name)
    assert vm is not None, f"no VM {vm_name!r}"
    assert sorted(d.name for d in vm.config.disks) == sorted(expected), f"{vm_name}: disks differ"
    for disk, data in expected.items():
        assert_same_bytes(read_disk(driver, vm_name, disk), data, f"{what or vm_name}/{disk}")


async def assert_point_restores_to(client: AbdrClient, driver: ClusterDriver, point_id: str, expected: Image,
                                   new_name: str) -> None:
    """Restore the point as a new VM `new_name` (REBUILD), compare it with the oracle, then
    delete the VM again so the cluster is as before."""
    handle = await client.restore(RestoreRequest(point_id=point_id, mode=RestoreMode.REBUILD, new_name=new_name))
    await client.restore_result(handle)
    try:
        assert_image(driver, new_name, expected, f"point {point_id} restored as {new_name}")
    finally:
        vm = driver.find_vm(new_name)
        if vm is not None:
            driver.delete_vm(vm.id)


def touched_chunk_bytes(extents: Iterable[Extent], chunk_size: int, disk_size: int) -> int:
    """Bytes of the chunks (aligned to the disk) that the extents touch: what an incremental
    backup that reads only changed chunks may read at most."""
    chunks: set[int] = set()
    for e in extents:
        chunks.update(range(e.offset // chunk_size, (e.offset + e.length - 1) // chunk_size + 1))
    return sum(min(chunk_size, disk_size - c * chunk_size) for c in chunks)
