"""Reading a QEMU NBD export (backup-begin pull mode, or qemu-nbd) with libnbd, the way the
driver's data path will: extents from block_status on a metadata context, data only where
asked."""

from __future__ import annotations

from pathlib import Path

import nbd

ALLOCATION = "base:allocation"
DIRTY = 1  # NBD_STATE_DIRTY, in a qemu:dirty-bitmap:* context
CHUNK = 4 << 20  # libnbd caps one request at 64 MiB; 4 MiB keeps memory flat


def connect(sock: Path, export: str, *contexts: str) -> nbd.NBD:
    h = nbd.NBD()
    for c in contexts:
        h.add_meta_context(c)
    h.set_export_name(export)
    h.connect_unix(str(sock))
    for c in contexts:
        if not h.can_meta_context(c):
            raise AssertionError(f"export {export} at {sock} has no context {c}")
    return h


def extents(h: nbd.NBD, context: str) -> list[tuple[int, int, int]]:
    """(offset, length, flags) over the whole export for one context, neighbours with the
    same flags merged. The server may answer for less than asked: ask again from there."""
    size = h.get_size()
    out: list[tuple[int, int, int]] = []
    offset = 0
    while offset < size:
        got: list[int] = []

        def cb(ctx: str, off: int, entries: list[int], err: int) -> int:
            if ctx == context:
                got.extend(entries)
            return 0

        h.block_status(min(size - offset, 1 << 30), offset, cb)
        if not got:
            raise AssertionError(f"no {context} extents at {offset}")
        for length, flags in zip(got[::2], got[1::2]):
            length = min(length, size - offset)
            if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == offset:
                out[-1] = (out[-1][0], out[-1][1] + length, flags)
            else:
                out.append((offset, length, flags))
            offset += length
    return out


def dirty(h: nbd.NBD, context: str) -> list[tuple[int, int]]:
    return [(o, n) for o, n, f in extents(h, context) if f & DIRTY]


def read(h: nbd.NBD, offset: int, length: int) -> bytes:
    parts = []
    for o in range(offset, offset + length, CHUNK):
        parts.append(h.pread(min(CHUNK, offset + length - o), o))
    return b"".join(parts)


def read_all(h: nbd.NBD) -> bytes:
    return read(h, 0, h.get_size())
