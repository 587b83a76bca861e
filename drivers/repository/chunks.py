"""Chunk codec (hash, compress, optionally encrypt) and the content-addressed chunk store.

A chunk file is `chunks/<first 2 hex of digest>/<64 hex digest>`:

    magic "ABDC" | version u8 | flags u8 | reserved u16 | raw_len u32 | payload_len u32 | payload

flags bit 0: payload is zstd-compressed (else stored raw, when compression did not help);
bit 1: payload is AES-256-GCM sealed (nonce | ciphertext | tag, AAD = header + digest).
"""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

import blake3
import zstandard

from drivers.repository.config import Layout, SyncMode
from drivers.repository.crypto import Cipher, RepoKey
from drivers.repository.errors import CorruptChunk, EncryptionError
from drivers.repository.fsutil import fsync_dir, read_whole, tmp_name, write_file

MAGIC = b"ABDC"
VERSION = 1
HEADER = struct.Struct("<4sBBHII")
FLAG_ZSTD = 1
FLAG_SEALED = 2
DIGEST_LEN = 32
ZERO_DIGEST = bytes(DIGEST_LEN)
# 256 fan-out directories, created by init: mkdir is as slow as several chunk writes, so
# none happen on the backup path (measured; spec §Layout).
FANOUT_HEX = 2  # reserved: "this chunk is all zeros, nothing stored"


class ChunkProblem(StrEnum):
    MISSING = "MISSING"
    CORRUPT = "CORRUPT"  # torn/bad header, failed authentication, or hash mismatch
    UNDECOMPRESSABLE = "UNDECOMPRESSABLE"


class ChunkCodec:
    """Turns chunk data into its digest and stored blob and back. Thread-safe: zstd contexts
    are per thread (they are not shareable), BLAKE3 and zstd release the GIL."""

    def __init__(self, level: int, key: RepoKey | None = None) -> None:
        self._level = level
        self._id_key = key.id if key else None
        self._cipher = Cipher(key) if key else None
        self._local = threading.local()

    def digest(self, data: bytes | memoryview) -> bytes:
        if self._id_key is not None:
            return blake3.blake3(data, key=self._id_key).digest()
        return blake3.blake3(data).digest()

    def _cctx(self) -> zstandard.ZstdCompressor:
        c = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self._level)
        return c

    def _dctx(self) -> zstandard.ZstdDecompressor:
        d = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    def encode(self, digest: bytes, data: bytes | memoryview, compress: bool = True) -> bytes:
        packed = self._cctx().compress(data) if compress else data  # a plan may turn compression off
        flags = FLAG_ZSTD
        if len(packed) >= len(data):  # incompressible: keep raw, saves decompression too
            packed, flags = bytes(data), 0
        if self._cipher is not None:
            flags |= FLAG_SEALED
            plen = len(packed) + 28  # nonce + tag
            header = HEADER.pack(MAGIC, VERSION, flags, 0, len(data), plen)
            return header + self._cipher.seal(packed, header + digest)
        return HEADER.pack(MAGIC, VERSION, flags, 0, len(data), len(packed)) + packed

    def decode(self, digest: bytes, blob: bytes) -> bytes:
        """Blob -> data, checking everything: header, length, authentication, hash."""
        name = digest.hex()
        if len(blob) < HEADER.size:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, f"file is {len(blob)} bytes, shorter than the header")
        magic, version, flags, _, raw_len, plen = HEADER.unpack_from(blob)
        if magic != MAGIC or version != VERSION:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, f"bad header (magic {magic!r}, version {version})")
        if len(blob) != HEADER.size + plen:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, f"size {len(blob)} != header + payload {HEADER.size + plen}")
        payload = memoryview(blob)[HEADER.size :]
        if flags & FLAG_SEALED:
            if self._cipher is None:
                raise CorruptChunk(name, ChunkProblem.CORRUPT, "chunk is encrypted but no key is loaded")
            try:
                payload = memoryview(self._cipher.open(bytes(payload), blob[: HEADER.size] + digest))
            except EncryptionError as e:
                raise CorruptChunk(name, ChunkProblem.CORRUPT, str(e)) from None
        elif self._cipher is not None:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, "unencrypted chunk in an encrypted repository")
        if flags & FLAG_ZSTD:
            try:
                data = self._dctx().decompress(payload, max_output_size=raw_len)
            except zstandard.ZstdError as e:
                raise CorruptChunk(name, ChunkProblem.UNDECOMPRESSABLE, str(e)) from None
        else:
            data = bytes(payload)
        if len(data) != raw_len:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, f"decoded {len(data)} bytes, header says {raw_len}")
        if self.digest(data) != digest:
            raise CorruptChunk(name, ChunkProblem.CORRUPT, "content does not hash to the chunk's name")
        return data


class ChunkStore:
    """Write-once chunk files. Writers never overwrite a chunk in a way a reader could observe
    half-written: data goes to a temporary sibling, then is renamed into place."""

    def __init__(self, layout: Layout, codec: ChunkCodec, sync: SyncMode) -> None:
        self.layout = layout
        self.codec = codec
        self.sync = sync

    def path(self, digest: bytes) -> Path:
        h = digest.hex()
        return self.layout.chunks / h[:FANOUT_HEX] / h

    def present(self, digest: bytes, fresh_since: float) -> bool:
        """Does a usable chunk file exist? If it is older than `fresh_since` (the caller's lease
        start), bump its mtime so a concurrent GC does not sweep it (GC protocol, spec §GC).
        A file shorter than the header (torn by a power loss) counts as absent."""
        p = self.path(digest)
        try:
            st = os.stat(p)
            if st.st_size < HEADER.size:
                return False
            if st.st_mtime < fresh_since:
                os.utime(p)
        except FileNotFoundError:
            return False
        return True

    def put(self, digest: bytes, data: bytes | memoryview, compress: bool = True) -> int:
        """Store a chunk (raw if not `compress`); returns the bytes written (header included)."""
        blob = self.codec.encode(digest, data, compress)
        self.put_blob(digest, blob)
        return len(blob)

    def put_blob(self, digest: bytes, blob: bytes) -> None:
        final = self.path(digest)
        tmp = tmp_name(final)
        durable = self.sync is SyncMode.FSYNC
        try:
            write_file(tmp, blob, fsync=durable)
        except FileNotFoundError:  # fan-out directory created lazily
            final.parent.mkdir(parents=True, exist_ok=True)
            write_file(tmp, blob, fsync=durable)
        # Same content under the same name: replacing a concurrent writer's file is harmless.
        os.replace(tmp, final)
        if durable:
            fsync_dir(final.parent)

    def read_blob(self, digest: bytes) -> bytes:
        p = self.path(digest)
        try:
            return read_whole(p)
        except FileNotFoundError:
            pass
        # A GC that crashed between moving a chunk to trash and judging it leaves it there
        # until the next GC puts it back; read it from there meanwhile.
        try:
            for e in os.scandir(p.parent):
                if e.name.startswith(f".trash.{p.name}."):
                    return read_whole(e.path)
        except FileNotFoundError:
            pass
        raise CorruptChunk(digest.hex(), ChunkProblem.MISSING, "chunk file not found")

    def get(self, digest: bytes) -> bytes:
        return self.codec.decode(digest, self.read_blob(digest))

    def iter_files(self) -> Iterator[os.DirEntry[str]]:
        """Every entry in the fan-out directories (chunk files and leftover temporaries)."""
        try:
            fanout = list(os.scandir(self.layout.chunks))
        except FileNotFoundError:
            return
        for d in fanout:
            if d.is_dir(follow_symlinks=False):
                yield from os.scandir(d.path)

    @staticmethod
    def digest_of_name(name: str) -> bytes | None:
        """The digest a chunk file name stands for, None for temporaries/foreign files."""
        if len(name) != 2 * DIGEST_LEN or name.startswith("."):
            return None
        try:
            return bytes.fromhex(name)
        except ValueError:
            return None
