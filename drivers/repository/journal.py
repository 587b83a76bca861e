"""Staging journal: the durable progress of one disk's backup, so another process can resume
at the first chunk not yet recorded instead of re-reading the disk.

    "ABDJ" | u32 header_len | header JSON | batch*
    batch = start u64 | count u64 | 6 x u64 cumulative stats | blake3(fields+entries) 32 | entries

Entries are the chunk table's 32-byte entries for [start, start+count). A batch is appended
only after the chunks it names are durable (spec §Commit), and a torn or garbage tail (power
loss mid-append) fails its checksum and is dropped on reopen.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import blake3

from drivers.repository.manifest import DIGEST_LEN, DiskStats

MAGIC = b"ABDJ"
_LEN = struct.Struct("<I")
_BATCH = struct.Struct("<8Q32s")
_STATS = ("read_bytes", "new_chunks", "new_bytes", "reused_chunks", "zero_chunks", "carried_chunks")


def _checksum(fields: tuple[int, ...], entries: bytes) -> bytes:
    return blake3.blake3(struct.pack("<8Q", *fields) + entries).digest()


class Journal:
    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        """Open the journal at `path` for `header`'s job, keeping the valid prefix of an
        earlier attempt of the same job; a journal of a different job is discarded."""
        self.path = path
        self.header = header
        self.entries = bytearray()
        self.stats = DiskStats()
        good = self._load()
        if good is None:
            blob = json.dumps(header, sort_keys=True).encode()
            with open(path, "wb") as f:
                f.write(MAGIC + _LEN.pack(len(blob)) + blob)
        else:
            os.truncate(path, good)  # drop a torn tail before appending after it
        self._f = open(path, "ab", buffering=0)

    @property
    def next_index(self) -> int:
        return len(self.entries) // DIGEST_LEN

    def _load(self) -> int | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        if data[:4] != MAGIC or len(data) < 8:
            return None
        (hlen,) = _LEN.unpack_from(data, 4)
        try:
            if json.loads(data[8 : 8 + hlen]) != json.loads(json.dumps(self.header, sort_keys=True)):
                return None
        except ValueError:
            return None
        pos = 8 + hlen
        while pos + _BATCH.size <= len(data):
            *fields, digest = _BATCH.unpack_from(data, pos)
            start, count = fields[0], fields[1]
            end = pos + _BATCH.size + count * DIGEST_LEN
            if start != self.next_index or end > len(data):
                break
            entries = data[pos + _BATCH.size : end]
            if _checksum(tuple(fields), entries) != digest:
                break
            self.entries += entries
            self.stats = DiskStats(**dict(zip(_STATS, fields[2:], strict=True)))
            pos = end
        return pos

    def append(self, entries: bytes, stats: DiskStats, *, fsync: bool) -> None:
        count = len(entries) // DIGEST_LEN
        fields = (self.next_index, count, *(getattr(stats, k) for k in _STATS))
        self._f.write(_BATCH.pack(*fields, _checksum(fields, entries)) + entries)
        if fsync:
            os.fsync(self._f.fileno())
        self.entries += entries
        self.stats = stats.model_copy()

    def close(self) -> None:
        self._f.close()


def read_entries(path: Path) -> bytes:
    """The valid entries of any journal (for GC's mark phase), whatever its header."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    if data[:4] != MAGIC or len(data) < 8:
        return b""
    pos = 8 + _LEN.unpack_from(data, 4)[0]
    out = bytearray()
    while pos + _BATCH.size <= len(data):
        *fields, digest = _BATCH.unpack_from(data, pos)
        end = pos + _BATCH.size + fields[1] * DIGEST_LEN
        if end > len(data) or _checksum(tuple(fields), data[pos + _BATCH.size : end]) != digest:
            break
        out += data[pos + _BATCH.size : end]
        pos = end
    return bytes(out)
