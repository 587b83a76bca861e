"""Repository config (format version, chunk size, codec, sync strategy) and on-disk layout.

The config is written once by `init` and never changed: every manifest's chunk list is only
meaningful under the chunk size and hash key it was written with.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from drivers.repository.errors import (
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    UnsupportedFormat,
)
from drivers.repository.fsutil import atomic_write, fsync_dir

FORMAT = "abdr-repository"
FORMAT_VERSION = 1
CBT_BLOCK = 64 * 1024  # change-tracking granularity of the local driver
# Chosen by measurement on the 2 GiB benchmark image (docs/repository-format.md, "Chunk size").
DEFAULT_CHUNK_SIZE = 128 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_COMPRESSION_LEVEL = 1


class SyncMode(StrEnum):
    SYNCFS = "syncfs"  # one syncfs(2) per checkpoint and before the manifest rename (default)
    FSYNC = "fsync"  # fsync every chunk file before its rename
    NONE = "none"  # no flushing at all: survives process crashes, not power loss (tests)


class EncryptionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cipher: str = "aes-256-gcm"
    key_id: str = Field(description="Keyed-BLAKE3 fingerprint of the key, to reject a wrong key.")


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str = FORMAT
    version: int = FORMAT_VERSION
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    chunk_size: int = DEFAULT_CHUNK_SIZE
    hash: str = "blake3"
    compression: str = "zstd"
    compression_level: int = Field(default=DEFAULT_COMPRESSION_LEVEL, ge=-7, le=19)
    sync: SyncMode = SyncMode.SYNCFS
    encryption: EncryptionConfig | None = None

    @field_validator("chunk_size")
    @classmethod
    def _chunk_size(cls, v: int) -> int:
        if v < CBT_BLOCK or v > MAX_CHUNK_SIZE or v & (v - 1) or v % CBT_BLOCK:
            raise ValueError(
                f"chunk_size {v} must be a power of two from {CBT_BLOCK} (64 KiB, the change-"
                f"tracking block) to {MAX_CHUNK_SIZE}"
            )
        return v


@dataclass(frozen=True)
class Layout:
    """Where everything lives under the repository root (see docs/repository-format.md)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def chunks(self) -> Path:
        return self.root / "chunks"

    @property
    def points(self) -> Path:
        return self.root / "points"

    @property
    def staging(self) -> Path:
        return self.root / "staging"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def locks(self) -> Path:
        return self.root / "locks"

    @property
    def gc_runs(self) -> Path:
        return self.root / "gc"

    @property
    def verify_runs(self) -> Path:
        return self.root / "verify"

    def point(self, point_id: str) -> Path:
        return self.points / f"{point_id}.json"

    def dirs(self) -> list[Path]:
        return [self.chunks, self.points, self.staging, self.leases, self.locks, self.gc_runs, self.verify_runs]


def init_repository(root: Path, config: RepoConfig) -> None:
    layout = Layout(root)
    root.mkdir(parents=True, exist_ok=True)
    if layout.config.exists():
        raise RepositoryExists(f"{root} already holds a repository ({layout.config} exists)")
    if any(p for p in root.iterdir() if p.name != "lost+found"):
        raise RepositoryError(f"refusing to create a repository in non-empty directory {root}")
    for d in layout.dirs():
        d.mkdir(exist_ok=True)
    for i in range(256):  # chunk fan-out (chunks.FANOUT_HEX)
        (layout.chunks / f"{i:02x}").mkdir(exist_ok=True)
    fsync_dir(root)
    # The config goes last: a half-initialised directory has no config and is not a repo.
    atomic_write(layout.config, config.model_dump_json(indent=2).encode())


def load_config(root: Path) -> RepoConfig:
    path = Layout(root).config
    try:
        raw = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise RepositoryNotFound(f"no repository at {root} ({path} not found)") from None
    except (OSError, ValueError) as e:
        raise UnsupportedFormat(f"cannot read repository config {path}: {e}") from e
    if raw.get("format") != FORMAT:
        raise UnsupportedFormat(f"{path} is not an abdr repository config (format={raw.get('format')!r})")
    if not isinstance(raw.get("version"), int) or raw["version"] > FORMAT_VERSION:
        raise UnsupportedFormat(
            f"repository {root} has format version {raw.get('version')}; this abdr reads up to "
            f"version {FORMAT_VERSION}: upgrade abdr"
        )
    return RepoConfig.model_validate(raw)


def host_id() -> str:
    return os.uname().nodename
