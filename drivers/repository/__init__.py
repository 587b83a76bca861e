"""The backup repository: a content-addressed chunk store of restore points on a filesystem
path (NFS in production). Format and protocols: docs/repository-format.md.

It knows nothing of cluster drivers: disks are read and written through callables
(`read_at(offset, length) -> bytes`, `write_at(offset, data)`) and lists of Extents.

    repo = Repository.init(path)                       # or Repository.open(path)
    with repo.begin_backup(vm_id=..., vm_config=cfg, plan="p") as s:
        s.backup_disk("disk0", size, read_at, allocated=extents)
        point = s.commit()
    repo.restore_disk(point.id, "disk0", write_at, target_is_zero=True)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.repository.chunks import ChunkCodec, ChunkProblem, ChunkStore
from drivers.repository.config import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_COMPRESSION_LEVEL,
    EncryptionConfig,
    Layout,
    RepoConfig,
    SyncMode,
    init_repository,
    load_config,
)
from drivers.repository.crypto import Cipher, RepoKey
from drivers.repository.errors import (
    CorruptChunk,
    CorruptManifest,
    EncryptionError,
    PointBusy,
    PointExists,
    PointNotFound,
    RepositoryError,
    RepositoryExists,
    RepositoryLocked,
    RepositoryNotFound,
    SourceChanged,
    UnsupportedFormat,
)
from drivers.repository.gc import GC_MARGIN, GCHooks, GCReport, collect_garbage
from drivers.repository.keys import find_key, install_key
from drivers.repository.locks import MaintenanceLock
from drivers.repository.manifest import ChunkTable, DiskManifest, DiskStats, PointDraft, RestorePoint
from drivers.repository.points import PointStore
from drivers.repository.progress import PROGRESS_INTERVAL, MaintenanceProgress, ProgressFn
from drivers.repository.prune import PruneReport, delete_point, prune, select_points
from drivers.repository.reader import PROGRESS_BYTES, DiskImage, DiskRestorer, RestoreProgress, WriteAt, ZeroAt
from drivers.repository.stats import PointStats, RepoStats, repo_stats
from drivers.repository.verify import DamagedRange, VerifyReport, verify
from drivers.repository.writer import BackupSession, DiskWriter, Progress, ReadAt
from models.inventory import VMConfig
from models.restore_points import PointCreation, PointType
from models.retention import Retention

__all__ = [
    "BackupSession", "ChunkProblem", "ChunkTable", "CorruptChunk", "CorruptManifest", "DamagedRange",
    "DiskImage", "DiskManifest", "DiskRestorer", "DiskStats", "DiskWriter", "EncryptionError", "GCHooks",
    "GCReport", "MaintenanceLock", "MaintenanceProgress", "find_key", "install_key", "PointBusy", "PointCreation", "PointExists", "PointNotFound", "PointStats",
    "PointType", "Progress", "PruneReport", "ReadAt", "RepoConfig", "RepoKey", "RepoStats", "Repository",
    "RepositoryError", "RepositoryExists", "RepositoryLocked", "RepositoryNotFound", "RestorePoint",
    "RestoreProgress", "SourceChanged", "SyncMode", "UnsupportedFormat", "VerifyReport", "WriteAt", "ZeroAt",
]


def new_point_id(vm_name: str, created_at: datetime) -> str:
    """Sortable by time, readable, unique: 20250101T120000Z-web01-3fa2c1."""
    return f"{created_at.astimezone(UTC):%Y%m%dT%H%M%SZ}-{vm_name}-{secrets.token_hex(3)}"


class Repository:
    """Facade over one repository directory. Thread-safe for concurrent backups/restores;
    several processes (workers) may use the same repository at once."""

    def __init__(self, root: Path, config: RepoConfig, key: RepoKey | None = None) -> None:
        self.root = Path(root)
        self.config = config
        self.layout = Layout(self.root)
        if config.encryption is not None:
            if key is None:
                raise EncryptionError(f"repository {root} is encrypted: open it with its key file")
            if key.key_id != config.encryption.key_id:
                raise EncryptionError(f"the key does not belong to repository {root} (key id mismatch)")
        elif key is not None:
            raise EncryptionError(f"repository {root} is not encrypted; do not pass a key")
        self.key = key
        self.codec = ChunkCodec(config.compression_level, key)
        self.store = ChunkStore(self.layout, self.codec, config.sync)
        self.points = PointStore(self.layout, config.sync, Cipher(key) if key else None)

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        path: str | Path,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        sync: SyncMode | str = SyncMode.SYNCFS,
        key: RepoKey | None = None,
    ) -> "Repository":
        """Create a repository in an empty (or absent) directory. With `key`, chunks and
        manifests are encrypted and chunk names are keyed digests; keep the key file safe."""
        enc = EncryptionConfig(key_id=key.key_id) if key else None
        config = RepoConfig(chunk_size=chunk_size, compression_level=compression_level, sync=SyncMode(sync),
                            encryption=enc)
        init_repository(Path(path), config)
        return cls(Path(path), config, key)

    @classmethod
    def open(cls, path: str | Path, *, key: RepoKey | str | Path | None = None,
             key_dir: Path | None = None) -> "Repository":
        """Open a repository; an encrypted one needs `key` (a key or a key file) or a `key_dir`
        holding its key (see drivers/repository/keys.py)."""
        if isinstance(key, (str, Path)):
            key = RepoKey.load(Path(key))
        config = load_config(Path(path))
        if key is None and config.encryption is not None:
            key = find_key(key_dir, config.encryption.key_id)
            if key is None:
                where = f"in {key_dir}" if key_dir else "(no key directory configured)"
                raise EncryptionError(
                    f"repository {path} is encrypted (key id {config.encryption.key_id}) and its key is not "
                    f"{where}: give this site's worker the key file (`abdr repository add-key NAME --key-file "
                    "FILE`, or copy it into ABDR_REPOSITORY_KEY_DIR)")
        return cls(Path(path), config, key)

    # -- backup ---------------------------------------------------------------------------
    def begin_backup(
        self,
        *,
        vm_id: str,
        vm_config: VMConfig,
        plan: str | None = None,
        creation: PointCreation = PointCreation.AUTO,
        base_point: str | None = None,
        labels: dict[str, str] | None = None,
        point_id: str | None = None,
        created_at: datetime | None = None,
    ) -> BackupSession:
        """Start (or, with the `point_id` of an unfinished one, resume) writing a restore
        point. With `base_point` the point is INCREMENTAL: disks backed up with `changed=`
        extents carry every other chunk entry from the base."""
        created_at = created_at or datetime.now(UTC)
        draft = PointDraft(
            id=point_id or new_point_id(vm_config.name, created_at), vm_id=vm_id, vm_name=vm_config.name,
            vm_config=vm_config, created_at=created_at,
            type=PointType.INCREMENTAL if base_point else PointType.FULL, creation=creation, plan=plan,
            base_point=base_point, labels=labels or {},
        )
        return BackupSession(self, draft)

    # -- points ---------------------------------------------------------------------------
    def get_point(self, point_id: str) -> RestorePoint:
        return self.points.read(point_id)

    def list_points(self, *, vm: str | None = None, plan: str | None = None) -> list[RestorePoint]:
        """Committed points, oldest first; `vm` matches the VM id or name."""
        return select_points(self, plan=plan, vm=vm)

    def delete_point(self, point_id: str, *, force: bool = False) -> None:
        """Remove a manifest (chunks go at the next GC). Refused with PointBusy while the
        point is the base of a running backup, unless `force`."""
        delete_point(self, point_id, force=force)

    def prune(self, retention: Retention, now: datetime, *, plan: str | None = None, vm: str | None = None,
              dry_run: bool = False) -> PruneReport:
        """Delete the AUTO points `retention` expires among those of `plan` / `vm`."""
        return prune(self, retention, now, plan=plan, vm=vm, dry_run=dry_run)

    # -- restore --------------------------------------------------------------------------
    def restorer(self, point_id: str, disk: str, write_at: WriteAt, *, target_is_zero: bool = False,
                 current_point: str | None = None, write_zeroes: ZeroAt | None = None,
                 workers: int | None = None) -> DiskRestorer:
        """A DiskRestorer (with `.progress`) for one disk of a point. `current_point`: the point
        the target disk equals now, for an in-place restore that writes only differences."""
        point = self.points.read(point_id)
        current = None
        if current_point is not None:
            try:
                current = self.points.read(current_point).disk(disk)
            except KeyError:
                current = None  # the disk is not in that point: nothing known, write it all
        return DiskRestorer(self, point, disk, write_at, target_is_zero=target_is_zero, current=current,
                            write_zeroes=write_zeroes, workers=workers)

    def restore_disk(self, point_id: str, disk: str, write_at: WriteAt, *, target_is_zero: bool = False,
                     current_point: str | None = None, write_zeroes: ZeroAt | None = None,
                     resume_from: int = 0, on_progress: Callable[[RestoreProgress], None] | None = None,
                     progress_bytes: int = PROGRESS_BYTES, workers: int | None = None) -> RestoreProgress:
        """Write one disk of a point through `write_at`; resumable at a progress chunk_index."""
        r = self.restorer(point_id, disk, write_at, target_is_zero=target_is_zero, current_point=current_point,
                          write_zeroes=write_zeroes, workers=workers)
        return r.run(resume_from=resume_from, on_progress=on_progress, progress_bytes=progress_bytes)

    def open_disk(self, point_id: str, disk: str) -> DiskImage:
        return DiskImage(self, self.points.read(point_id), disk)

    # -- maintenance ----------------------------------------------------------------------
    def verify(self, point_ids: list[str] | None = None, *, workers: int | None = None,
               expected: set[str] | None = None, quarantine: bool = True, progress: ProgressFn | None = None,
               progress_interval: float = PROGRESS_INTERVAL, read_iops: int | None = None,
               unknown_grace: float = 0.0) -> VerifyReport:
        """Re-hash what the points reference (see drivers/repository/verify.py)."""
        return verify(self, point_ids, workers=workers, expected=expected, quarantine=quarantine,
                      progress=progress, progress_interval=progress_interval, read_iops=read_iops,
                      unknown_grace=unknown_grace)

    def gc(self, *, margin: float = GC_MARGIN, dry_run: bool = False, hooks: GCHooks | None = None,
           progress: ProgressFn | None = None, **kw: Any) -> GCReport:
        return collect_garbage(self, margin=margin, dry_run=dry_run, hooks=hooks, progress=progress, **kw)

    def stats(self) -> RepoStats:
        return repo_stats(self)

    def maintenance_lock(self, op: str) -> MaintenanceLock:
        """The lock GC/prune/delete take; other maintenance tools should take it too."""
        return MaintenanceLock(self.layout, op)
