"""The public export path of volumes: `export-vm-volume` (CloudTower's ExportVmVolumeParams,
`{where: VmVolumeWhereInput, data: {type: RAW | QCOW2}}`) makes a VmExportFile as a task;
`get-vm-export-files` reads them; `delete-vm-export-file` removes one; the file itself is
fetched by `GET /v2/files/vm-export/<fileUUID>` (HTTP Range honoured). What abdr falls back
to when a deployment exposes no storage access: whole-volume reads, no changed blocks.

The public schema exports a volume as it is now; for a snapshot's view the caller names the
snapshot in `data.vm_snapshot_id` (an addition: a real deployment's adapter maps it onto a
volume cloned from the snapshot). The simulator writes RAW files only."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

from drivers.qcow2 import images
from starter.simulators.aoc.errors import SimError, bad, not_found
from starter.simulators.aoc.filters import select
from starter.simulators.aoc.sim import Sim, public
from starter.simulators.aoc.store import Row, new_id, now
from starter.simulators.aoc.vm_ops import target_volumes

Body = dict[str, Any]
TABLE = "vm_export_files"


def exports_dir(sim: Sim) -> Path:
    d = sim.cfg.state / "exports"
    d.mkdir(exist_ok=True)
    return d


def export_vm_volume(sim: Sim, body: Body) -> list[Body]:
    data = body.get("data") or {}
    kind = data.get("type")
    if kind not in ("RAW", "QCOW2"):
        raise bad("InvalidExportType", f"data.type {kind!r} is not RAW or QCOW2")
    if kind != "RAW":
        raise bad("Unsupported", "the AOC simulator exports RAW files only")
    snap_id = data.get("vm_snapshot_id")
    out = []
    with sim.store.lock:
        for vol in target_volumes(sim, body):
            vm_id = (vol.get("vm") or {}).get("id")
            if not vm_id:
                raise bad("VolumeNotMounted", f"volume {vol['id']} belongs to no VM")
            if snap_id is not None:
                s = sim.store.get("vm_snapshots", snap_id)
                if s is None or s["vm"]["id"] != vm_id or s.get("entityAsyncStatus"):
                    raise not_found(f"snapshot {snap_id} of VM {vm_id}")
            sim.engine.check_free(vol["id"])
            file_uuid = new_id()
            row: Row = {"id": new_id(), "type": "RAW", "createdAt": now(), "damaged": False, "data_port_id": "",
                        "storage_cluster_id": vol["cluster"]["id"], "entityAsyncStatus": "CREATING",
                        "vm": {"id": vm_id}, "vm_volume": {"id": vol["id"], "name": vol["name"]},
                        "vm_snapshot_id": snap_id, "files": []}
            sim.store.put(TABLE, row)
            target = exports_dir(sim) / f"{file_uuid}.raw"

            def work(row: Row = row, vm_id: str = vm_id, vol_id: str = vol["id"], target: Path = target,
                     file_uuid: str = file_uuid) -> None:
                with sim.storage.changing(vm_id, "none", reading=True) as (_v, st):  # nothing changes meanwhile
                    top, _size = sim.storage.view(vm_id, st, vol_id, snap_id)
                    try:
                        images.run("convert", "-q", "-O", "raw", images.chain_filename(st.chain(top)), str(target))
                    except images.ImageError as e:
                        raise SimError(500, "ExportFailed", str(e)) from None
                md5 = hashlib.md5()
                with target.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        md5.update(chunk)
                files = [{"fileName": f"{row['vm_volume']['name']}.raw", "fileSize": target.stat().st_size,
                          "fileUUID": file_uuid, "fileSecret": secrets.token_hex(16), "md5": md5.hexdigest(),
                          "type": "RAW"}]
                sim.update(TABLE, row["id"], files=files, entityAsyncStatus=None)

            def undo(row_id: str = row["id"], target: Path = target) -> None:
                sim.store.delete(TABLE, row_id)
                target.unlink(missing_ok=True)

            task = sim.engine.submit("export-vm-volume", [vol["id"]], vol["cluster"]["id"], work, undo)
            out.append({"task_id": task["id"], "data": public(row)})
    return out


def delete_vm_export_file(sim: Sim, body: Body) -> list[Body]:
    with sim.store.lock:
        rows = select(sim.store.rows(TABLE), {"where": body.get("where") or {}})
        for r in rows:
            for f in r.get("files") or []:
                (exports_dir(sim) / f"{f['fileUUID']}.raw").unlink(missing_ok=True)
            sim.store.delete(TABLE, r["id"])
    return [{"task_id": None, "data": {"id": r["id"]}} for r in rows]


def export_file(sim: Sim, file_uuid: str, secret: str | None) -> Path:
    """The exported file `file_uuid`, if `secret` is its fileSecret."""
    for r in sim.store.rows(TABLE):
        for f in r.get("files") or []:
            if f["fileUUID"] == file_uuid:
                if secret != f["fileSecret"]:
                    raise SimError(403, "Forbidden", f"wrong or no secret for export file {file_uuid}")
                return exports_dir(sim) / f"{file_uuid}.raw"
    raise not_found(f"export file {file_uuid}")
