"""`abdr api` as its own process (the real uvicorn server, as users run it), over the e2e
stack's Temporal and workers; its RSS can be read from /proc."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from tests.e2e.conftest import Stack
from tests.ports import free_port

ABDR = str(Path(sys.executable).parent / "abdr")



def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class ApiProcess:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, token: str, log: Path) -> None:
        self.proc, self.url, self.token, self.log = proc, url, token, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self, token: str | None = None, **kw: object) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=120, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def api_process(stack: Stack, token: str, extra_env: dict[str, str] | None = None) -> AsyncIterator[ApiProcess]:
    port = free_port()
    log = stack.tmp / "api.log"
    env = {**os.environ, "ABDR_TEMPORAL_ADDRESS": stack.settings.temporal_address, "ABDR_API_TOKEN": token,
           "ABDR_DATA_DIR": str(stack.tmp / "api-state"), "ABDR_LOG_FORMAT": "json", **(extra_env or {})}
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(ABDR, "api", "--host", "127.0.0.1", "--port", str(port), env=env,
                                                    stdout=out, stderr=out)
    api = ApiProcess(proc, f"http://127.0.0.1:{port}", token, log)
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=5) as probe:
            for _ in range(600):
                if proc.returncode is not None:
                    raise AssertionError(f"abdr api exited {proc.returncode}: {log.read_text()}")
                try:
                    if (await probe.get("/openapi.json")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("abdr api did not come up")
        yield api
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
