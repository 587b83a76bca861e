"""Wire format of the transport (version 1).

POST /v1/extents  {cluster, vm_id, disk, snapshot_id, base_snapshot_id?} ->
                  {size, block_size, extents: [[offset, length], ...]}
                  (changed since the base, or allocated when there is no base)
POST /v1/read     {cluster, vm_id, disk, snapshot_id, extents: [[offset, length], ...]} ->
                  zstd frame of the extents' bytes concatenated in order (the bytes
                  themselves when the request says compress: false);
                  header X-Abdr-Blake3 = BLAKE3 of the uncompressed bytes (end-to-end check)
GET  /v1/health   {ok, site}
Every request carries `Authorization: Bearer <token>`; a read asks for at most
MAX_READ_BYTES, so a retry after a dropped connection repeats little.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_READ_BYTES = 8 << 20
DIGEST_HEADER = "X-Abdr-Blake3"


class ExtentsRequest(BaseModel):
    cluster: str
    vm_id: str
    disk: str
    snapshot_id: str
    base_snapshot_id: str | None = None


class ExtentsReply(BaseModel):
    size: int
    block_size: int
    extents: list[tuple[int, int]]


class ReadRequest(BaseModel):
    cluster: str
    vm_id: str
    disk: str
    snapshot_id: str | None = Field(default=None, description="The snapshot to read: the server serves snapshots only and refuses None (a live disk).")
    extents: list[tuple[int, int]]
    compress: bool = Field(default=True, description="zstd on the wire (a replication plan's compression).")
