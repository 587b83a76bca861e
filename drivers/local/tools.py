"""Moving raw images in and out of a cluster, and a deterministic "running VM" workload.
Used by tests, the bench and the CLI. Work through any ClusterDriver's public API, so the
writes go through the copy-on-write path exactly as a guest's would."""

from __future__ import annotations

import os
import random
from pathlib import Path

from drivers.base import ClusterDriver, DriverError, blocks_to_extents
from models.inventory import VM, DiskSpec, Extent, VMConfig

CHUNK = 4 << 20  # streaming unit: bounded memory, few syscalls


def _zero_block_runs(buf: bytes | bytearray, n: int, block: int) -> list[tuple[int, int]]:
    """[start, end) byte runs of buf[:n] made of non-zero `block`-sized pieces."""
    zero = bytes(block)
    runs: list[tuple[int, int]] = []
    for off in range(0, n, block):
        end = min(off + block, n)
        if buf.startswith(zero if end - off == block else zero[: end - off], off, end):
            continue  # startswith compares in place (no copy): >10 GB/s
        if runs and runs[-1][1] == off:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((off, end))
    return runs


def import_image(driver: ClusterDriver, raw_path: str | os.PathLike[str], config_or_name: VMConfig | str,
                 disk: str = "disk0") -> VM:
    """Create a VM whose `disk` holds the raw image (size rounded up to 4 KiB). All-zero
    blocks stay holes. With a VMConfig, that disk must exist and be at least as large."""
    size = os.path.getsize(raw_path)
    if isinstance(config_or_name, str):
        config = VMConfig(name=config_or_name,
                          disks=[DiskSpec(name=disk, size_bytes=max(4096, -(-size // 4096) * 4096), boot=True)])
    else:
        config = config_or_name
        try:
            have = config.disk(disk).size_bytes
        except KeyError:
            raise DriverError(f"VM config {config.name!r} has no disk {disk!r} to import {raw_path} into") from None
        if have < size:
            raise DriverError(f"image {raw_path} ({size} bytes) does not fit disk {disk!r} ({have} bytes)")
    vm = driver.create_vm(config)
    try:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        with open(raw_path, "rb", buffering=0) as f, driver.open_disk(vm.id, disk, writable=True) as h:
            pos = 0
            while (n := f.readinto(buf)) > 0:
                runs = _zero_block_runs(buf, n, driver.block_size)
                if runs:  # views into buf: no copy (write_many is done before the next readinto)
                    h.write_many([(pos + s, view[s:e]) for s, e in runs])
                pos += n
            h.flush()
    except BaseException:
        driver.delete_vm(vm.id)
        raise
    return driver.get_vm(vm.id)


def export_disk(driver: ClusterDriver, vm_id: str, disk: str, out_path: str | os.PathLike[str],
                snap_id: str | None = None) -> int:
    """Write the disk (live or a snapshot's view) to a raw file, zero blocks as holes.
    Returns the number of bytes written as data."""
    written = 0
    tmp = Path(f"{out_path}.partial")
    with driver.open_disk(vm_id, disk, snap_id) as h:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for ext in driver.allocated_extents(vm_id, disk, snap_id):
                for off in range(ext.offset, ext.end, CHUNK):
                    data = h.read(off, min(CHUNK, ext.end - off))
                    for s, e in _zero_block_runs(data, len(data), driver.block_size):
                        os.pwrite(fd, data[s:e], off + s)
                        written += e - s
            os.ftruncate(fd, h.size)
            os.fsync(fd)
        finally:
            os.close(fd)
    os.replace(tmp, out_path)
    return written


# --- the bench's mutate workload (bench/make_image.py): same block choice and content kinds
_WORDS = (
    "the of and to in is for on with that by this be are from at as it or an "
    "error warning info debug kernel systemd sshd nginx postgres cron usr lib "
    "etc var log tmp home root service started stopped failed connection "
    "request response user session timeout retry value config enabled disabled "
    "true false none default path file open close read write sync mount device "
    "block inode cache memory cpu disk network interface address port host "
    "localhost 127.0.0.1 0x0000 0xffff 200 404 500 GET POST HTTP/1.1 id=1 "
    "pid=42 uid=0 gid=0 status=ok level=3 = : ; { } [ ] ( ) # -- == /"
).split()


def _vocab() -> list[bytes]:
    rng = random.Random(12345)  # fixed, as in make_image.py: part of the content format
    table: list[bytes] = []
    while len(table) < 256:
        w = rng.choice(_WORDS[:20]) if rng.random() < 0.35 else rng.choice(_WORDS)
        w += "\n" if rng.random() < 0.08 else " "
        table.append(w.encode())
    return table


_VOCAB = _vocab()


def text_bytes(rng: random.Random, n: int) -> bytes:
    """n bytes of compressible, non-repeating log/config-like text."""
    out = bytearray()
    while len(out) < n:
        out += b"".join(map(_VOCAB.__getitem__, rng.randbytes(n // 5 + 64)))
    return bytes(out[:n])


def rewrite_fraction(driver: ClusterDriver, vm_id: str, disk: str, fraction: float, seed: int,
                     block: int = 65536, batch: int = 256) -> list[Extent]:
    """Overwrite round(fraction * blocks) scattered `block`-sized blocks, half random and
    half text bytes, as `make_image.py mutate --run-blocks 1` does to a file (same seed, same
    blocks and bytes). Returns the written extents, merged and sorted."""
    vm = driver.get_vm(vm_id)
    size = vm.config.disk(disk).size_bytes
    nblocks = size // block
    if nblocks == 0:
        return []
    rng = random.Random(seed)
    want = round(fraction * nblocks)
    blocks = sorted(rng.sample(range(nblocks), max(1, want)))
    with driver.open_disk(vm_id, disk, writable=True) as h:
        for i in range(0, len(blocks), batch):
            writes = []
            for b in blocks[i : i + batch]:
                data = rng.randbytes(block) if rng.random() < 0.5 else text_bytes(rng, block)
                writes.append((b * block, data))
            h.write_many(writes)  # one durability barrier per batch, like a queue of guest writes
    return blocks_to_extents(blocks, block, size)
