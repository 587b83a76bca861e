"""Undo stores: the blocks of one disk as they were when a snapshot was taken, copied out of
the live disk on their first overwrite after that snapshot (and before the next one).

Two append-only files per (snapshot, disk):
  <disk>.undo  preserved blocks, block_size bytes per slot
  <disk>.idx   16-byte records <block u64, slot u32, crc32 u32>; slot ZERO_SLOT means the
               block was all zeros (nothing stored)
A record is valid iff its crc matches; loading stops at the first invalid record, so a torn
tail left by a crash is ignored and overwritten by the next append. Appends make the data
durable before the records that point at it, and the records durable before returning, so
a caller may then overwrite the live blocks (see disk.py).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from drivers.fsio import BulkWriter
from drivers.local.layout import fsync_dir, pwrite_all

REC = struct.Struct("<QII")
ZERO_SLOT = 0xFFFFFFFF


def _crc(block: int, slot: int) -> int:
    return zlib.crc32(struct.pack("<QI", block, slot))


class UndoStore:
    """One undo store, opened. Not thread-safe; callers hold the VM lock around refresh and
    append (SH for reading, EX for appending)."""

    def __init__(self, snap_dir: Path, disk: str, block_size: int, *, create: bool = False) -> None:
        self.block_size = block_size
        self.idx_path = snap_dir / f"{disk}.idx"
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        # data first: an index without its data file would be a dangling store
        self._data_fd = os.open(snap_dir / f"{disk}.undo", flags, 0o644)
        try:
            self._idx_fd = os.open(self.idx_path, flags, 0o644)
        except BaseException:
            os.close(self._data_fd)
            raise
        self._data = BulkWriter(self._data_fd)  # preserved blocks are written once, read rarely
        self.index: dict[int, int] = {}
        self._valid = 0  # bytes of the index file parsed and valid
        self._next_slot = 0
        self.refresh()

    def refresh(self) -> None:
        """Pick up records appended by other handles or processes since the last look."""
        size = os.fstat(self._idx_fd).st_size
        if size < self._valid:  # only a merge rewrites history, and it bumps vm.json
            self.index.clear()
            self._valid = self._next_slot = 0
        if size - self._valid < REC.size:
            return
        tail = os.pread(self._idx_fd, size - self._valid, self._valid)
        usable = len(tail) - len(tail) % REC.size
        for block, slot, crc in REC.iter_unpack(memoryview(tail)[:usable]):
            if crc != _crc(block, slot):
                break  # torn tail: ignore it and everything after it
            self.index[block] = slot
            if slot != ZERO_SLOT and slot >= self._next_slot:
                self._next_slot = slot + 1
            self._valid += REC.size

    def read(self, block: int, start: int, length: int) -> bytes:
        """Bytes [start, start+length) of the preserved `block`."""
        slot = self.index[block]
        if slot == ZERO_SLOT:
            return bytes(length)
        data = os.pread(self._data_fd, length, slot * self.block_size + start)
        return data if len(data) == length else data + bytes(length - len(data))

    def append(self, blocks: list[tuple[int, bytes]]) -> None:
        """Preserve full blocks (block number, block_size bytes) not yet in this store.
        Costs two fdatasyncs for the whole batch: data, then index."""
        bs = self.block_size
        zero = bytes(bs)
        recs: list[bytes] = []
        payload: list[bytes] = []
        for block, data in blocks:
            assert len(data) == bs and block not in self.index
            if data == zero:
                recs.append(REC.pack(block, ZERO_SLOT, _crc(block, ZERO_SLOT)))
            else:
                slot = self._next_slot + len(payload)
                payload.append(data)
                recs.append(REC.pack(block, slot, _crc(block, slot)))
        if not recs:
            return
        if payload:
            self._data.write_many((self._next_slot * bs + i * bs, data) for i, data in enumerate(payload))
            os.fdatasync(self._data_fd)
        if os.fstat(self._idx_fd).st_size != self._valid:
            os.ftruncate(self._idx_fd, self._valid)  # drop a torn tail before appending
        pwrite_all(self._idx_fd, b"".join(recs), self._valid)
        os.fdatasync(self._idx_fd)
        for r in recs:
            block, slot, _ = REC.unpack(r)
            self.index[block] = slot
        self._valid += len(recs) * REC.size
        self._next_slot += len(payload)

    def close(self) -> None:
        self._data.close()
        for fd in (self._data_fd, self._idx_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def merge_into(src_dir: Path, dst_dir: Path, block_size: int, batch: int = 256) -> None:
    """Append to dst's stores the blocks of src's stores they lack (deleting snapshot src
    whose predecessor is dst: the predecessor's view read those blocks through src)."""
    for idx in sorted(src_dir.glob("*.idx")):
        disk = idx.stem
        src = UndoStore(src_dir, disk, block_size)
        dst = UndoStore(dst_dir, disk, block_size, create=True)
        try:
            fsync_dir(dst_dir)
            need = sorted(src.index.keys() - dst.index.keys())
            for i in range(0, len(need), batch):
                dst.append([(b, src.read(b, 0, block_size)) for b in need[i : i + batch]])
        finally:
            src.close()
            dst.close()
