"""Reads through the public export path, for an AOC that exposes no storage access
(docs/driver-contract.md, "Without the storage access"): `export-vm-volume` makes a RAW
file of the volume (of a snapshot's view with `data.vm_snapshot_id`) as a task, the file is
read by HTTP Range requests, and the file is deleted when the handle closes. No changed
extents and no writes: every backup reads whole volumes."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import httpx

from drivers.aoc.client import AocClient
from drivers.base import Bytes, DriverError, InvalidState, NotFound, Unsupported
from drivers.qcow2.nbd import check_range

ATTEMPTS = 5


class AocExportHandle:
    """A read-only disk handle over one exported RAW file."""

    def __init__(self, client: AocClient, volume_id: str, snap_id: str | None) -> None:
        self.c, self.volume_id = client, volume_id
        data: dict[str, Any] = {"type": "RAW"}
        if snap_id is not None:
            data["vm_snapshot_id"] = snap_id
        row = self.c.change("export-vm-volume", {"where": {"id": volume_id}, "data": data})[0]
        self.export_id = str(row["id"])
        rows = self.c.read("get-vm-export-files", {"id": self.export_id})
        if not rows or not rows[0].get("files"):
            raise DriverError(f"AOC {self.c.base_url}: export {self.export_id} of volume {volume_id} has no file")
        f = rows[0]["files"][0]
        self.file_uuid, self._secret = str(f["fileUUID"]), str(f["fileSecret"])
        self.size = int(f["fileSize"])

    def read(self, offset: int, length: int) -> bytes:
        check_range(self.size, offset, length)
        if length == 0:
            return b""
        headers = {"range": f"bytes={offset}-{offset + length - 1}", "x-file-secret": self._secret}
        for _ in range(ATTEMPTS):
            try:
                r = self.c.get(f"/v2/files/vm-export/{self.file_uuid}", headers)
            except httpx.TransportError:
                continue
            if r.status_code == 206 and len(r.content) == length:
                return r.content
            if r.status_code == 404:
                raise NotFound(f"AOC {self.c.base_url}: export file {self.file_uuid} of volume {self.volume_id} "
                               "is gone")
            if r.status_code < 500:
                raise DriverError(f"AOC {self.c.base_url}: reading export file {self.file_uuid} "
                                  f"[{offset}, +{length}) answered {r.status_code}: {r.text[:300]}")
        raise DriverError(f"AOC {self.c.base_url}: export file {self.file_uuid} keeps failing after {ATTEMPTS} reads")

    def write(self, offset: int, data: Bytes) -> None:
        self.write_many([(offset, data)])

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        raise InvalidState("this handle is read-only")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.export_id:
            export_id, self.export_id = self.export_id, ""
            self.c.change("delete-vm-export-file", {"where": {"id": export_id}})

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def no_writes(base_url: str) -> Unsupported:
    return Unsupported(f"AOC {base_url} exposes no storage access (/v2/storage): abdr cannot write volume "
                       "blocks through the public API alone, so restores and replicas onto this cluster need "
                       "the storage access of docs/driver-contract.md")
