"""Restore point manifests: the pydantic models written as `points/<id>.json`.

A disk's chunk list is kept as one packed byte string of 32-byte entries (a BLAKE3 digest,
or 32 zero bytes for "all-zero chunk, nothing stored"), serialised as base64 of its zstd
compression. A JSON array of hex strings would be 2.2x bigger and cost a Python object per
chunk; packed, a 1 TiB disk at 128 KiB chunks is 256 MiB in memory and a few MiB on disk
(zero runs and repeated entries compress away).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import zstandard
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, field_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from models.inventory import VMConfig
from models.restore_points import PointCreation, PointType

DIGEST_LEN = 32
ZERO = bytes(DIGEST_LEN)
MANIFEST_VERSION = 1
POINT_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
_POINT_ID_RE = re.compile(POINT_ID_PATTERN)


def check_point_id(point_id: str) -> str:
    if not _POINT_ID_RE.match(point_id):
        raise ValueError(
            f"restore point id {point_id!r} is invalid: 1-128 letters, digits, '.', '_' or '-', "
            "not starting with '.' or '-'"
        )
    return point_id


class ChunkTable:
    """The chunk list of one disk: entry i covers bytes [i*chunk_size, (i+1)*chunk_size).

    Decoding from JSON is lazy, so listing points does not unpack every chunk list.
    """

    __slots__ = ("_packed", "_encoded")

    def __init__(self, packed: bytes | bytearray | None = None, *, encoded: str | None = None) -> None:
        if packed is not None and len(packed) % DIGEST_LEN:
            raise ValueError(f"packed chunk table length {len(packed)} is not a multiple of {DIGEST_LEN}")
        self._packed = bytes(packed) if packed is not None else None
        self._encoded = encoded

    @classmethod
    def zeros(cls, n: int) -> "ChunkTable":
        return cls(bytes(n * DIGEST_LEN))

    @property
    def packed(self) -> bytes:
        if self._packed is None:
            try:
                raw = zstandard.ZstdDecompressor().decompress(base64.b64decode(self._encoded or ""))
            except (ValueError, zstandard.ZstdError) as e:
                raise ValueError(f"chunk table does not decode: {e}") from e
            if len(raw) % DIGEST_LEN:
                raise ValueError(f"chunk table length {len(raw)} is not a multiple of {DIGEST_LEN}")
            self._packed = raw
        return self._packed

    def encode(self) -> str:
        if self._encoded is None:
            self._encoded = base64.b64encode(zstandard.ZstdCompressor(level=3).compress(self.packed)).decode()
        return self._encoded

    def __len__(self) -> int:
        return len(self.packed) // DIGEST_LEN

    def __getitem__(self, i: int) -> bytes | None:
        """The digest of chunk i, or None for a zero chunk."""
        if i < 0:
            i += len(self)
        e = self.packed[i * DIGEST_LEN : (i + 1) * DIGEST_LEN]
        if len(e) != DIGEST_LEN:
            raise IndexError(i)
        return None if e == ZERO else e

    def entry(self, i: int) -> bytes:
        """Raw 32-byte entry (ZERO for a zero chunk); cheaper for comparisons."""
        return self.packed[i * DIGEST_LEN : (i + 1) * DIGEST_LEN]

    def __iter__(self) -> Iterator[bytes | None]:
        p = self.packed
        for off in range(0, len(p), DIGEST_LEN):
            e = p[off : off + DIGEST_LEN]
            yield None if e == ZERO else e

    def digests(self) -> set[bytes]:
        """Distinct non-zero digests."""
        p = self.packed
        s = {p[o : o + DIGEST_LEN] for o in range(0, len(p), DIGEST_LEN)}
        s.discard(ZERO)
        return s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChunkTable) and self.packed == other.packed

    def __repr__(self) -> str:
        return f"ChunkTable({len(self)} chunks)"

    @classmethod
    def _validate(cls, v: Any) -> "ChunkTable":
        if isinstance(v, ChunkTable):
            return v
        if isinstance(v, str):
            return cls(encoded=v)
        if isinstance(v, (bytes, bytearray)):
            return cls(v)
        if isinstance(v, list):  # list of hex digests / None, handy in tests and tooling
            return cls(b"".join(ZERO if x is None else bytes.fromhex(x) for x in v))
        raise ValueError(f"cannot make a chunk table from {type(v).__name__}")

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.encode()),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, cs: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string",
                "description": "base64(zstd(concatenated 32-byte entries)); all-zero entry = zero chunk"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiskStats(_Model):
    """What one disk's backup did (summed over resumed attempts)."""

    read_bytes: int = 0  # bytes read from the source
    new_chunks: int = 0  # chunks this backup stored
    new_bytes: int = 0  # their stored (compressed) size
    reused_chunks: int = 0  # read, hashed, already present
    zero_chunks: int = 0  # read and found all zero
    carried_chunks: int = 0  # taken from the base point without reading (incremental)


class DiskManifest(_Model):
    name: str
    size: int = Field(gt=0)
    chunk_size: int = Field(gt=0)
    chunks: ChunkTable
    stats: DiskStats = Field(default_factory=DiskStats)

    @field_validator("chunks")
    @classmethod
    def _count(cls, v: ChunkTable, info: Any) -> ChunkTable:
        size, cs = info.data.get("size"), info.data.get("chunk_size")
        if size and cs and len(v) != -(-size // cs):
            raise ValueError(f"chunk table has {len(v)} entries, a {size}-byte disk needs {-(-size // cs)}")
        return v

    @property
    def chunk_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_extent(self, i: int) -> tuple[int, int]:
        off = i * self.chunk_size
        return off, min(self.chunk_size, self.size - off)


class PointDraft(_Model):
    """A point being written: everything of RestorePoint but the disks (kept in staging)."""

    id: str
    vm_id: str
    vm_name: str
    vm_config: VMConfig
    created_at: datetime
    type: PointType
    creation: PointCreation = PointCreation.AUTO
    plan: str | None = None
    base_point: str | None = None  # the point an incremental carried unchanged chunks from
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_point_id(v)

    @field_validator("created_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v


class RestorePoint(PointDraft):
    """A committed restore point: its draft plus every chunk of every disk. Restoring it
    needs no other point, and deleting another point never breaks it."""

    version: int = MANIFEST_VERSION
    disks: list[DiskManifest] = Field(default_factory=list)
    committed_at: datetime | None = None

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v > MANIFEST_VERSION:
            raise ValueError(f"manifest version {v} is newer than this abdr reads ({MANIFEST_VERSION}): upgrade abdr")
        return v

    @field_validator("committed_at")
    @classmethod
    def _committed_aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    def disk(self, name: str) -> DiskManifest:
        for d in self.disks:
            if d.name == name:
                return d
        raise KeyError(f"restore point {self.id} has no disk {name!r} (disks: {[d.name for d in self.disks]})")

    @property
    def logical_size(self) -> int:
        return sum(d.size for d in self.disks)

    @property
    def new_bytes(self) -> int:
        return sum(d.stats.new_bytes for d in self.disks)

    def digests(self) -> set[bytes]:
        out: set[bytes] = set()
        for d in self.disks:
            out |= d.chunks.digests()
        return out
