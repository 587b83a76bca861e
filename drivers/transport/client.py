"""The transport client: pulls extents of a remote site's snapshot, verified end to end,
with a bandwidth cap; dropped connections and transient failures are retried (every request
is idempotent) and what remains is raised typed: unreachable, transient, or refused."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import blake3
import httpx
import zstandard

from drivers.ratelimit import TokenBucket
from drivers.transport.protocol import DIGEST_HEADER, MAX_READ_BYTES, ExtentsReply, ExtentsRequest, ReadRequest

T = TypeVar("T")


class TransportError(Exception):
    """The remote site answered and refused: a bad request, a wrong token, no such disk.
    A retry cannot fix it."""


class TransportUnreachable(TransportError):
    """The remote site's transport does not answer (down, network cut): it may come back."""


class TransportTransient(TransportError):
    """The remote site answered with a failure a retry can fix: a 5xx, a held lock, a read
    that arrived corrupted or short."""


# 423 Locked, 429 Too Many Requests, 5xx: the server's state, not the request, was the problem.
TRANSIENT_STATUS = frozenset({408, 423, 429})


def batches(extents: list[tuple[int, int]], limit: int = MAX_READ_BYTES) -> Iterator[list[tuple[int, int]]]:
    """Group extents (split where longer than `limit`) into requests of at most `limit` bytes."""
    batch: list[tuple[int, int]] = []
    size = 0
    for off, n in extents:
        while n:
            take = min(n, limit - size)
            batch.append((off, take))
            size += take
            off, n = off + take, n - take
            if size == limit:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


class TransportClient:
    def __init__(self, base_url: str, token: str, *, ca: Path | str | None = None, bandwidth_mbps: int | None = None,
                 retries: int = 5, timeout_s: float = 60) -> None:
        verify = ssl.create_default_context(cafile=str(ca)) if ca else True
        # The transport object carries the TLS settings (a Client's own `verify` would be ignored).
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s,
                                 transport=httpx.HTTPTransport(retries=retries, verify=verify))
        # Bandwidth counted on the wire (compressed bytes), in 64 KiB tokens.
        self.bucket = TokenBucket(bandwidth_mbps * 1_000_000 / 8 / 65536) if bandwidth_mbps else None
        self.retries = retries
        self.wire_bytes = 0

    def close(self) -> None:
        self.http.close()

    def _retrying(self, call: Callable[[], T]) -> T:
        """call() again after a dropped connection or a transient failure (every request of
        the protocol is idempotent); what is left after `retries` is raised, typed."""
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (TransportUnreachable, TransportTransient):
                if attempt == self.retries:
                    raise
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
        raise AssertionError("unreachable code")

    def _post_once(self, path: str, body: dict) -> tuple[bytes, httpx.Headers]:
        """POST and return the body and headers. The body is read by streaming into our own
        buffer: a Response keeping its content sits in reference cycles until the garbage
        collector runs, which let a seed pull's memory grow batch by batch."""
        try:
            with self.http.stream("POST", path, json=body) as r:
                content = b"".join(r.iter_raw())
                status, headers = r.status_code, r.headers
        except httpx.TransportError as e:
            raise TransportUnreachable(f"{path}: the remote site's transport is unreachable: {e}") from e
        if status != 200:
            try:
                msg = json.loads(content).get("error", content.decode(errors="replace"))
            except (ValueError, AttributeError):
                msg = content.decode(errors="replace")
            kind = TransportTransient if status >= 500 or status in TRANSIENT_STATUS else TransportError
            raise kind(f"{path}: HTTP {status}: {msg}")
        return content, headers

    def health(self) -> dict:
        r = self.http.get("/v1/health")
        r.raise_for_status()
        return r.json()

    def extents(self, req: ExtentsRequest) -> ExtentsReply:
        return self._retrying(lambda: ExtentsReply.model_validate_json(
            self._post_once("/v1/extents", req.model_dump())[0]))

    def read(self, req: ReadRequest) -> bytes:
        return self._retrying(lambda: self._read_once(req))

    def _read_once(self, req: ReadRequest) -> bytes:
        content, headers = self._post_once("/v1/read", req.model_dump())
        if self.bucket is not None:
            self.bucket.take(max(1, len(content) // 65536))
        self.wire_bytes += len(content)
        try:
            data = (zstandard.ZstdDecompressor().decompress(content, max_output_size=MAX_READ_BYTES)
                    if req.compress else content)
        except zstandard.ZstdError as e:
            raise TransportTransient(f"a read arrived corrupted (not a zstd frame: {e})") from e
        if blake3.blake3(data).hexdigest() != headers.get(DIGEST_HEADER):
            raise TransportTransient("a read arrived corrupted (digest mismatch)")
        expected = sum(n for _, n in req.extents)
        if len(data) != expected:
            raise TransportTransient(f"a read returned {len(data)} bytes, not {expected}")
        return data
