"""Reading, writing and deleting manifests (`points/<id>.json`), optionally sealed."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from drivers.repository.config import Layout, SyncMode
from drivers.repository.crypto import Cipher
from drivers.repository.errors import CorruptManifest, EncryptionError, PointExists, PointNotFound
from drivers.repository.fsutil import fsync_dir, syncfs, tmp_name, write_file
from drivers.repository.manifest import RestorePoint, check_point_id

SEALED_MAGIC = b"ABDM1"


class PointStore:
    def __init__(self, layout: Layout, sync: SyncMode, cipher: Cipher | None) -> None:
        self.layout = layout
        self.sync = sync
        self.cipher = cipher

    def ids(self) -> list[str]:
        return sorted(
            e.name[:-5] for e in os.scandir(self.layout.points)
            if e.name.endswith(".json") and not e.name.startswith(".")
        )

    def exists(self, point_id: str) -> bool:
        return self.layout.point(check_point_id(point_id)).exists()

    def _decode(self, point_id: str, blob: bytes) -> RestorePoint:
        if blob.startswith(SEALED_MAGIC):
            if self.cipher is None:
                raise CorruptManifest(f"restore point {point_id} is encrypted and no key is loaded")
            try:
                blob = self.cipher.open(blob[len(SEALED_MAGIC):], b"manifest:" + point_id.encode())
            except EncryptionError as e:
                raise CorruptManifest(f"restore point {point_id}: {e}") from None
        elif self.cipher is not None:
            raise CorruptManifest(f"restore point {point_id} is not encrypted in an encrypted repository")
        try:
            point = RestorePoint.model_validate_json(blob)
        except ValidationError as e:
            raise CorruptManifest(f"restore point {point_id}: manifest does not parse: {e}") from None
        if point.id != point_id:
            raise CorruptManifest(f"manifest file {point_id}.json holds point {point.id}")
        return point

    def read(self, point_id: str) -> RestorePoint:
        path = self.layout.point(check_point_id(point_id))
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise PointNotFound(f"no restore point {point_id!r} in repository {self.layout.root}") from None
        return self._decode(point_id, blob)

    def write(self, point: RestorePoint) -> None:
        """Commit: the manifest appears atomically, after everything it names is durable."""
        final = self.layout.point(point.id)
        blob = point.model_dump_json().encode()
        if self.cipher is not None:
            blob = SEALED_MAGIC + self.cipher.seal(blob, b"manifest:" + point.id.encode())
        tmp = tmp_name(final)
        write_file(tmp, blob, fsync=self.sync is SyncMode.FSYNC)
        try:
            if self.sync is SyncMode.SYNCFS:
                # Chunks, journal and this manifest's data reach the disk before the name does.
                syncfs(self.layout.root)
            try:
                os.link(tmp, final)  # no-clobber rename: a committed point is never replaced
            except FileExistsError:
                raise PointExists(f"restore point {point.id} is already committed") from None
        finally:
            tmp.unlink(missing_ok=True)
        if self.sync is not SyncMode.NONE:
            fsync_dir(final.parent)

    def remove(self, point_id: str) -> Path:
        """Move the manifest aside (invisible at once); the caller unlinks or restores it."""
        path = self.layout.point(check_point_id(point_id))
        aside = path.with_name(f".deleting.{point_id}.{os.getpid()}.tmp")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            raise PointNotFound(f"no restore point {point_id!r} in repository {self.layout.root}") from None
        return aside

    def restore(self, aside: Path, point_id: str) -> None:
        os.rename(aside, self.layout.point(point_id))

    def finish_remove(self, aside: Path) -> None:
        aside.unlink(missing_ok=True)
        if self.sync is not SyncMode.NONE:
            fsync_dir(aside.parent)
