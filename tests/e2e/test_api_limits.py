"""Request bodies are bounded: a 64 MiB request (declared or chunked, with or without a
token) is answered 413 in the one error shape, and the real server's memory stays flat
(before, one such request took the API process to ~1 GiB RSS)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from tests.e2e.api_process import api_process, rss_kib
from tests.e2e.conftest import Stack

TOKEN = "limits-" + "k" * 24
MiB = 1 << 20
BIG = 64 * MiB


async def chunks(total: int, size: int = MiB) -> AsyncIterator[bytes]:
    block = b"[" + b"1," * (size // 2 - 1) + b"1"  # a JSON array as long as the body
    sent = 0
    while sent < total:
        yield block[: min(size, total - sent)]
        sent += size


async def test_large_requests_get_413_and_memory_stays_bounded(stack: Stack) -> None:
    async with api_process(stack, TOKEN) as api:
        async with api.client() as http:
            assert (await http.get("/v1/backup-plans")).status_code == 200  # warm: imports, the Temporal client
            baseline = rss_kib(api.pid)
            for headers in ({}, {"Authorization": "Bearer wrong-token"}):
                declared = await http.post("/v1/backup-plans", content=b"x" * BIG,
                                           headers={"content-type": "application/json", **headers})
                assert declared.status_code == 413, declared.text
                assert declared.json() == {"error": f"the request body is larger than {MiB} bytes", "kind": "invalid",
                                           "details": None}
                chunked = await http.post("/v1/restores", content=chunks(BIG),
                                          headers={"content-type": "application/json", **headers})
                assert chunked.status_code == 413 and "larger than" in chunked.json()["error"]
            peak = rss_kib(api.pid, "VmHWM")
            # 4 x 64 MiB went in; what the process ever held beyond its warm state is far less than one.
            assert peak - baseline < 32 * 1024, (baseline, peak)
            # A body under the limit is still read and validated as before.
            small = await http.post("/v1/backup-plans", json={"name": "x"})
            assert small.status_code == 422 and small.json()["details"]
            assert (await http.get("/v1/backup-plans")).status_code == 200
