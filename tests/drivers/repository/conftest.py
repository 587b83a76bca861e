"""Fixtures for repository tests: real repositories on tmp_path, real file-backed disks with
deterministic mixed content, and read/write counters (no mocks)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.repository import Repository, SyncMode
from models.inventory import DiskSpec, Extent, VMConfig

KiB, MiB = 1 << 10, 1 << 20
CS = 64 * KiB  # tests use the smallest chunk size: more chunks per MiB, same code paths


def text_bytes(rng: random.Random, n: int) -> bytes:
    words = [b"error ", b"kernel ", b"GET /index ", b"200 ", b"user=root ", b"\n", b"retry ", b"cache "]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


def make_content(size: int, seed: int) -> bytearray:
    """Mixed content like a VM disk: zero runs, random runs, text runs, 4 KiB aligned."""
    rng = random.Random(seed)
    buf = bytearray(size)
    pos = 0
    while pos < size:
        ln = min(size - pos, rng.choice([4, 16, 64, 100, 256]) * KiB)
        kind = rng.random()
        if kind < 0.35:
            pass  # zeros
        elif kind < 0.7:
            buf[pos : pos + ln] = rng.randbytes(ln)
        else:
            buf[pos : pos + ln] = text_bytes(rng, ln)
        pos += ln
    return buf


class FileDisk:
    """A disk image file with pread/pwrite, counting every call."""

    def __init__(self, path: Path, size: int, content: bytes | None = None) -> None:
        self.path = path
        self.size = size
        with open(path, "wb") as f:
            f.truncate(size)
            if content is not None:
                f.write(content)
        self.fd = os.open(path, os.O_RDWR)
        self.reads: list[tuple[int, int]] = []
        self.writes: list[tuple[int, int]] = []

    def read_at(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return os.pread(self.fd, length, offset)

    def write_at(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, len(data)))
        os.pwrite(self.fd, data, offset)

    def patch(self, offset: int, data: bytes) -> Extent:
        """Guest write (not counted): returns the changed extent, as CBT would report it."""
        os.pwrite(self.fd, data, offset)
        return Extent(offset=offset, length=len(data))

    def content(self) -> bytes:
        return os.pread(self.fd, self.size, 0)

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    # No flushing in most tests: they test logic, and syncfs would flush the whole shared
    # filesystem. test_durability.py covers the syncfs and fsync modes.
    return Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE)


@pytest.fixture
def disks(tmp_path: Path) -> Iterator[callable]:
    made: list[FileDisk] = []

    def make(name: str, size: int, content: bytes | None = None) -> FileDisk:
        d = FileDisk(tmp_path / f"{name}.img", size, content)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def vm_config(name: str = "vm1", **disks: int) -> VMConfig:
    disks = disks or {"disk0": 4 * MiB}
    return VMConfig(name=name, disks=[DiskSpec(name=n, size_bytes=s) for n, s in disks.items()])


def backup(repo: Repository, vm: VMConfig, sources: dict[str, FileDisk], *, vm_id: str | None = None,
           base: str | None = None, changed: dict[str, list[Extent]] | None = None, **kw):
    """Back up every disk of `vm` from `sources` and commit."""
    with repo.begin_backup(vm_id=vm_id or vm.name, vm_config=vm, base_point=base, **kw) as s:
        for spec in vm.disks:
            d = sources[spec.name]
            if changed is not None:
                s.backup_disk(spec.name, d.size, d.read_at, changed=changed.get(spec.name, []))
            else:
                s.backup_disk(spec.name, d.size, d.read_at)
        return s.commit()


def restore_bytes(repo: Repository, point_id: str, disk: str, tmp_path: Path, **kw) -> bytes:
    p = repo.get_point(point_id)
    size = p.disk(disk).size
    target = FileDisk(tmp_path / f"restore-{point_id}-{disk}.img", size)
    try:
        repo.restore_disk(point_id, disk, target.write_at, target_is_zero=True, **kw)
        return target.content()
    finally:
        target.close()
        target.path.unlink()
