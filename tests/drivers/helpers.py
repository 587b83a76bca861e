"""Small helpers shared by the driver tests: VM configs, deterministic data, a reference
model of a disk."""

from __future__ import annotations

import random

from drivers.base import ClusterDriver
from models.inventory import NIC, VM, DiskSpec, VMConfig

BS = 64 * 1024


def config(name: str, *disks: tuple[str, int], guest_tools: bool = False, vcpu: int = 1) -> VMConfig:
    disks = disks or (("disk0", 16 * BS),)
    return VMConfig(
        name=name,
        vcpu=vcpu,
        disks=[DiskSpec(name=n, size_bytes=s) for n, s in disks],
        nics=[NIC(name="nic0", network="vlan-prod", mac="52:54:00:00:00:01")],
        guest_tools=guest_tools,
    )


def make_vm(driver: ClusterDriver, name: str = "vm1", *disks: tuple[str, int], **kw: object) -> VM:
    return driver.create_vm(config(name, *disks, **kw))  # type: ignore[arg-type]


def data(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def read_all(driver: ClusterDriver, vm_id: str, disk: str = "disk0", snap_id: str | None = None) -> bytes:
    with driver.open_disk(vm_id, disk, snap_id) as h:
        return h.read(0, h.size)


def blocks_of(offset: int, length: int, bs: int = BS) -> set[int]:
    return set(range(offset // bs, (offset + length - 1) // bs + 1))


def diff_blocks(a: bytes, b: bytes, bs: int = BS) -> set[int]:
    """Blocks where two equally long images differ."""
    return {i // bs for i in range(0, len(a), bs) if a[i : i + bs] != b[i : i + bs]}
