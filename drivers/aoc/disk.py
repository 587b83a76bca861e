"""A disk view of an AOC VM over the storage data plane: NBD to the export the storage
names (`export-volume`), each write batch inside a write lease (`acquire-write-lease` ...
`release-write-lease`) so that a snapshot takes all of it or none. The storage ends an
export when the files under it change (a snapshot, a merge, a rollback); the handle then
asks again and reconnects, and a snapshot view that is gone answers NotFound."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Self, TypeVar

import nbd

from drivers.aoc.client import AocClient
from drivers.base import Bytes, DriverError, InvalidState
from drivers.qcow2.nbd import NbdImage, check_range

ATTEMPTS = 5
T = TypeVar("T")


class AocDiskHandle:
    def __init__(self, client: AocClient, vm_id: str, volume_id: str, snap_id: str | None, writable: bool) -> None:
        self.c, self.writable = client, writable
        self.ref = {"vm_id": vm_id, "volume_id": volume_id}
        self.snap_id = snap_id
        self._img: NbdImage | None = None
        self._at: tuple[str, int] | None = None  # (uri, generation) of the connected export
        self.size = -1
        self.size = self._retrying(lambda img: img.size)

    def _connect(self, uri: str, gen: int) -> NbdImage:
        if self._img is None or self._at != (uri, gen):
            self._drop()
            self._img, self._at = NbdImage.connect(uri, writable=self.writable), (uri, gen)
        return self._img

    def _export(self) -> NbdImage:
        r = self.c.storage("export-volume", {**self.ref, "snapshot_id": self.snap_id})
        return self._connect(r["uri"], r["generation"])

    def _drop(self) -> None:
        if self._img is not None:
            try:
                self._img.close()
            finally:
                self._img, self._at = None, None

    def _retrying(self, call: Callable[[NbdImage], T]) -> T:
        for _ in range(ATTEMPTS):
            try:
                return call(self._img or self._export())  # NotFound once the snapshot is gone
            except nbd.Error:
                self._drop()  # the export ended under us: ask for the current one
        raise DriverError(f"volume {self.ref['volume_id']}: NBD keeps failing after {ATTEMPTS} exports")

    def read(self, offset: int, length: int) -> bytes:
        check_range(self.size, offset, length)
        return self._retrying(lambda img: img.read(offset, length))

    def write(self, offset: int, data: Bytes) -> None:
        self.write_many([(offset, data)])

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        if not self.writable:
            raise InvalidState("this handle is read-only")
        batch = list(writes)
        for off, data in batch:  # before the lease: a refused batch must not hold one
            check_range(self.size, off, len(memoryview(data).cast("B")))
        for _ in range(ATTEMPTS):
            lease = self.c.storage("acquire-write-lease", self.ref)
            try:
                img = self._connect(lease["uri"], lease["generation"])
                img.write_many(batch)
                img.flush()  # durable before the lease goes: a snapshot may come next
                ok = True
            except nbd.Error:
                self._drop()
                ok = False
            finally:  # LeaseExpired: a snapshot may have cut the batch; the caller must know
                self.c.storage("release-write-lease", {"vm_id": self.ref["vm_id"], "lease_id": lease["lease_id"]})
            if ok:
                return
        raise DriverError(f"volume {self.ref['volume_id']}: NBD writes keep failing after {ATTEMPTS} leases")

    def flush(self) -> None:
        if self.writable and self._img is not None:
            try:
                self._img.flush()
            except nbd.Error:
                self._drop()  # the export ended: it flushed everything written before it did

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
