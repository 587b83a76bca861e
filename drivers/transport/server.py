"""The transport server a site worker runs: read-only access to its clusters' snapshots
(never live disks) for the other site's worker. Token-authenticated; TLS when given a
certificate."""

from __future__ import annotations

import asyncio
import hmac
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drivers.base import ClusterDriver, DriverError, NotFound, OperationTimeout, ResourceLocked
from drivers.secrets import check_secret
from drivers.transport.protocol import DIGEST_HEADER, MAX_READ_BYTES, ExtentsReply, ExtentsRequest, ReadRequest

DriverLookup = Callable[[str], ClusterDriver]


def snapshot_only(snapshot_id: str | None) -> None:
    """Only snapshots are served: a live disk changes under the reader (a torn copy) and is
    the running VM's data, which no pull needs."""
    if not snapshot_id:
        raise ValueError("the transport serves snapshots only: the request names no snapshot_id")


def make_app(drivers: DriverLookup, token: str, site: str) -> Starlette:
    check_secret(token, "the transport token", "ABDR_TRANSPORT_TOKEN")

    def authorised(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())

    def guard(handler: Callable) -> Callable:
        async def wrapped(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"error": "unauthorised"}, status_code=401)
            try:
                return await handler(request)
            except NotFound as e:
                return JSONResponse({"error": str(e)}, status_code=404)
            except (ResourceLocked, OperationTimeout) as e:  # the client retries these
                return JSONResponse({"error": str(e)}, status_code=423 if isinstance(e, ResourceLocked) else 503)
            except (DriverError, ValueError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
        return wrapped

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "site": site})

    async def extents(request: Request) -> Response:
        req = ExtentsRequest.model_validate(await request.json())
        snapshot_only(req.snapshot_id)

        def work() -> ExtentsReply:
            d = drivers(req.cluster)
            with d.open_disk(req.vm_id, req.disk, req.snapshot_id) as h:
                size = h.size
            ext = (d.changed_extents(req.vm_id, req.disk, req.base_snapshot_id, req.snapshot_id)
                   if req.base_snapshot_id else d.allocated_extents(req.vm_id, req.disk, req.snapshot_id))
            return ExtentsReply(size=size, block_size=d.block_size, extents=[(e.offset, e.length) for e in ext])

        return JSONResponse((await asyncio.to_thread(work)).model_dump())

    async def read(request: Request) -> Response:
        req = ReadRequest.model_validate(await request.json())
        snapshot_only(req.snapshot_id)
        total = sum(n for _, n in req.extents)
        if total > MAX_READ_BYTES:
            raise ValueError(f"a read asks for at most {MAX_READ_BYTES} bytes, not {total}")

        def work() -> tuple[bytes, str]:
            with drivers(req.cluster).open_disk(req.vm_id, req.disk, req.snapshot_id) as h:
                data = b"".join(h.read(off, n) for off, n in req.extents)
            body = zstandard.ZstdCompressor(level=1).compress(data) if req.compress else data
            return body, blake3.blake3(data).hexdigest()

        body, digest = await asyncio.to_thread(work)
        return Response(body, media_type="application/zstd", headers={DIGEST_HEADER: digest})

    return Starlette(routes=[Route("/v1/health", guard(health)), Route("/v1/extents", guard(extents), methods=["POST"]),
                             Route("/v1/read", guard(read), methods=["POST"])])


class TransportServer:
    """uvicorn in a background thread, stopped with the worker."""

    def __init__(self, app: Starlette, host: str, port: int, certfile: Path | None = None,
                 keyfile: Path | None = None) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                ssl_certfile=str(certfile) if certfile else None,
                                ssl_keyfile=str(keyfile) if keyfile else None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="abdr-transport", daemon=True)

    def start(self, timeout: float = 15) -> "TransportServer":
        self.thread.start()
        for _ in range(int(timeout * 20)):
            if self.server.started:
                return self
            if not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        raise RuntimeError("the transport server did not start (is its port free?)")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
