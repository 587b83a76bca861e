"""drivers.fsio.BulkWriter on real files: whatever mix of pieces it is given (aligned runs that
go around the page cache, unaligned or small ones that stay buffered, runs longer than one
direct write), the file ends up holding exactly what an independent bytearray says, and a
reader that had the old bytes cached sees the new ones."""

from __future__ import annotations

import os
import random
from pathlib import Path

from drivers.fsio import DIRECT_MIN, DIRECT_SPAN, BulkWriter, supports_direct

SIZE = 24 << 20


def _pieces(rng: random.Random) -> list[tuple[int, bytes]]:
    """Runs of adjacent pieces of mixed sizes and alignments, anywhere in the file."""
    out: list[tuple[int, bytes]] = []
    for _ in range(40):
        aligned = rng.random() < 0.6
        off = rng.randrange(0, SIZE - (2 << 20))
        off -= off % 4096 if aligned else 0
        for _ in range(rng.randint(1, 12)):
            n = rng.choice([128 << 10, 64 << 10, 4096, 1 << 20]) if aligned else rng.randint(1, 200_000)
            if off + n > SIZE:
                break
            out.append((off, rng.randbytes(n)))
            off += n
    return out


def test_every_mix_of_writes_leaves_exactly_the_oracles_bytes(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "disk.raw"
    oracle = bytearray(rng.randbytes(SIZE))
    path.write_bytes(oracle)
    fd = os.open(path, os.O_RDWR)
    bulk = BulkWriter(fd)
    try:
        for _ in range(5):
            batch = _pieces(rng)
            for off, data in batch:
                oracle[off : off + len(data)] = data
            bulk.write_many(batch)
        # one aligned run longer than a direct write: split, all of it written
        long = rng.randbytes(DIRECT_SPAN + (3 << 20))
        bulk.write_many([(i, long[i : i + (1 << 20)]) for i in range(0, len(long), 1 << 20)])
        oracle[: len(long)] = long
        os.fsync(fd)
    finally:
        bulk.close()
        os.close(fd)
    assert path.read_bytes() == bytes(oracle)
    if supports_direct(path):
        assert bulk.direct_bytes >= DIRECT_SPAN  # the aligned runs did go around the cache


def test_a_reader_with_the_old_bytes_cached_sees_the_new_ones(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\x11" * (4 << 20))
    reader = os.open(path, os.O_RDONLY)
    fd = os.open(path, os.O_RDWR)
    bulk = BulkWriter(fd)
    try:
        assert os.pread(reader, 1 << 20, 1 << 20) == b"\x11" * (1 << 20)  # now in the page cache
        bulk.write_many([(1 << 20, b"\x22" * DIRECT_MIN), ((1 << 20) + DIRECT_MIN, b"\x33" * (256 << 10))])
        expected = b"\x22" * DIRECT_MIN + b"\x33" * (256 << 10)
        assert os.pread(reader, len(expected), 1 << 20) == expected
        assert os.pread(reader, 4096, (1 << 20) - 4096) == b"\x11" * 4096  # the bytes around stay
    finally:
        bulk.close()
        os.close(fd)
        os.close(reader)
