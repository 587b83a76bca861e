"""The simulator's HTTP face (FastAPI): `POST /v2/api/<op>` as the AOC answers it,
`POST /v2/storage/<op>` (the storage data plane) and the simulator-only admin routes under
`/sim/` (clusters for tests, fault injection, simulated guests)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from starter.simulators.aoc import export_ops, snapshot_ops, storage_ops, vm_ops
from starter.simulators.aoc.errors import SimError, bad
from starter.simulators.aoc.reads import TABLE_OF, read
from starter.simulators.aoc.sim import Sim

log = logging.getLogger("abdr.aoc-simulator")
Handler = Callable[[Sim, Any], Any]
CHANGES: dict[str, Handler] = {
    "create-vm": vm_ops.create_vm, "delete-vm": vm_ops.delete_vm, "update-vm": vm_ops.update_vm,
    "start-vm": vm_ops.start_vm, "shutdown-vm": vm_ops.shutdown_vm, "poweroff-vm": vm_ops.poweroff_vm,
    "add-vm-disk": vm_ops.add_vm_disk, "remove-vm-disk": vm_ops.remove_vm_disk,
    "update-vm-volume": vm_ops.update_vm_volume, "update-vm-nic": vm_ops.update_vm_nic,
    "add-vm-nic": vm_ops.add_vm_nic, "remove-vm-nic": vm_ops.remove_vm_nic,
    "create-vm-snapshot": snapshot_ops.create_vm_snapshot, "delete-vm-snapshot": snapshot_ops.delete_vm_snapshot,
    "rollback-vm": snapshot_ops.rollback_vm, "rebuild-vm-from-snapshot": vm_ops.rebuild_vm_from_snapshot,
    "export-vm-volume": export_ops.export_vm_volume, "delete-vm-export-file": export_ops.delete_vm_export_file,
}


def error(status: int, code: str | None, message: str, path: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message, "path": path, "code": code}, status_code=status)


def build_app(sim: Sim) -> FastAPI:
    app = FastAPI(title="AOC simulator (not a real AOC)", description="A test double speaking the AOC REST API.")

    async def call(request: Request, op: str, fn: Callable[[], Any]) -> JSONResponse:
        path = request.url.path
        slow = sim.faults.take("slow", op)
        if slow:
            await asyncio.sleep(slow.delay_s)
        if sim.faults.take("error-500", op):
            return error(500, "InjectedFailure", "internal error injected by the AOC simulator", path)
        if sim.faults.take("locked", op):
            return error(400, "ResourceLocked", "resource locked (fault injected by the AOC simulator)", path)
        try:
            return JSONResponse(await run_in_threadpool(fn))
        except SimError as e:
            return error(e.status, e.code, e.message, path)
        except Exception as e:  # an answer, not a dropped connection: the client must see it
            log.exception("%s failed", path)
            return error(500, "InternalError", f"{type(e).__name__}: {e}", path)

    async def body_of(request: Request) -> Any:
        raw = await request.body()
        return await request.json() if raw else {}

    @app.post("/v2/api/login")
    async def login(request: Request) -> JSONResponse:
        body = await body_of(request)
        return await call(request, "login", lambda: sim.login(body))

    @app.post("/v2/api/{op}")
    async def api(op: str, request: Request) -> JSONResponse:
        body = await body_of(request)

        def run() -> Any:
            sim.check_token(request.headers.get("authorization"))
            if op in TABLE_OF:
                return read(sim, op, body)
            if op in CHANGES:
                return CHANGES[op](sim, body)
            raise SimError(404, "NotFound", f"the AOC simulator has no operation {op!r}")

        return await call(request, op, run)

    @app.get("/v2/files/vm-export/{file_uuid}")
    async def export_file(file_uuid: str, request: Request) -> Response:
        def run() -> Any:
            sim.check_token(request.headers.get("authorization"))
            path = export_ops.export_file(sim, file_uuid, request.headers.get("x-file-secret"))
            return byte_range(path, request.headers.get("range"))

        try:
            status, headers, data = await run_in_threadpool(run)
        except SimError as e:
            return error(e.status, e.code, e.message, request.url.path)
        return Response(data, status_code=status, headers=headers, media_type="application/octet-stream")

    if sim.cfg.storage_access:  # without it, /v2/storage/... is unknown here, as on an AOC that lacks it
        @app.post("/v2/storage/{op}")
        async def storage(op: str, request: Request) -> JSONResponse:
            body = await body_of(request)

            def run() -> Any:
                sim.check_token(request.headers.get("authorization"))
                if op not in storage_ops.OPS:
                    raise SimError(404, "NotFound", f"the AOC simulator's storage has no operation {op!r}")
                return storage_ops.OPS[op](sim, body)

            return await call(request, op, run)

    # ------------------------------------------------------------------ simulator-only admin
    @app.get("/sim/health")
    async def health() -> dict[str, Any]:
        return {"simulator": "AOC simulator", "clusters": len(sim.store.rows("clusters"))}

    @app.post("/sim/clusters")
    async def add_cluster(request: Request) -> JSONResponse:
        body = await body_of(request)
        return await call(request, "sim", lambda: sim.add_cluster(str(body["name"]),
                                                                  list(body.get("vlans", sim.cfg.vlans))))

    @app.post("/sim/clusters/delete")
    async def remove_cluster(request: Request) -> JSONResponse:
        body = await body_of(request)
        def run() -> Any:
            sim.remove_cluster(str(body["id"]))
            return {"id": body["id"]}

        return await call(request, "sim", run)

    @app.post("/sim/faults")
    async def add_fault(request: Request) -> JSONResponse:
        body = await body_of(request)

        def run() -> Any:
            try:
                return sim.faults.add(body).__dict__
            except (TypeError, ValueError) as e:
                raise bad("InvalidFault", str(e)) from None

        return await call(request, "sim", run)

    @app.post("/sim/faults/clear")
    async def clear_faults(request: Request) -> JSONResponse:
        def run() -> Any:
            sim.faults.clear()
            return {}

        return await call(request, "sim", run)

    @app.post("/sim/expire-tokens")
    async def expire(request: Request) -> JSONResponse:
        def run() -> Any:
            sim.expire_tokens()
            return {}

        return await call(request, "sim", run)

    @app.post("/sim/vms/guest")
    async def guest(request: Request) -> JSONResponse:
        body = await body_of(request)

        def run() -> Any:
            vm = sim.vm(body.get("vm_id"))
            fields = {f"_sim_{k}": bool(body[k]) for k in ("refuse_shutdown", "guest_tools") if k in body}
            return {"id": sim.update("vms", vm["id"], **fields)["id"]}

        return await call(request, "sim", run)

    @app.post("/sim/vms/write")
    async def guest_write(request: Request) -> JSONResponse:
        """The guest writes to its disk (a test's oracle bytes), storage access or not."""
        body = await body_of(request)

        def run() -> Any:
            vm = sim.vm(body.get("vm_id"))
            vol = next((d["vm_volume"]["id"] for d in vm["vm_disks"] if d["vm_volume"]["name"] == body.get("disk")),
                       None)
            if vol is None:
                raise bad("NotFound", f"VM {vm['id']} has no disk {body.get('disk')!r}")
            sim.storage.guest_write(vm["id"], vol, int(body["offset"]), base64.b64decode(str(body["data"])))
            return {"written": True}

        return await call(request, "sim", run)

    return app


def byte_range(path: Path, header: str | None) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET of `path`, one `bytes=A-B` range if asked for."""
    size = path.stat().st_size
    if not header:
        return 200, {"accept-ranges": "bytes"}, path.read_bytes()
    unit, _, spec = header.partition("=")
    start_s, _, end_s = spec.partition("-")
    if unit.strip() != "bytes" or not start_s.isdigit() or (end_s and not end_s.isdigit()) or "," in spec:
        raise SimError(416, "RangeNotSatisfiable", f"unsupported Range {header!r}: one bytes=A-B range only")
    start, end = int(start_s), min(int(end_s) if end_s else size - 1, size - 1)
    if start > end:
        raise SimError(416, "RangeNotSatisfiable", f"Range {header!r} is outside the file's {size} bytes")
    with path.open("rb") as f:
        f.seek(start)
        data = f.read(end - start + 1)
    return 206, {"accept-ranges": "bytes", "content-range": f"bytes {start}-{end}/{size}"}, data
