"""A real browser for the tests: Debian's Chromium, headless (scripts/ensure-browser.sh installs
it; no Playwright or Selenium, whose browser downloads need the internet). A page is loaded
with every fetch off this machine failing (a proxy at a closed local port; Chromium never
proxies loopback), and given virtual time to run its scripts: time that stands still while
a fetch is pending, so an app's data has arrived before the DOM is read or the picture taken.
A page that never stops fetching (a running workflow's live history) would hold it forever."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import struct
import tempfile
import zlib
from pathlib import Path

WINDOW = (1400, 1000)
HANG_S = 120  # not a speed check: a browser stuck past this is killed and the test fails
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        raise RuntimeError("chromium is not installed; run `make test` (scripts/ensure-browser.sh installs it)")
    return path


async def _run(url: str, *args: str, budget_ms: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="abdr-chromium-") as profile:  # a profile per run: no shared lock
        proc = await asyncio.create_subprocess_exec(
            chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", f"--window-size={WINDOW[0]},{WINDOW[1]}",
            f"--virtual-time-budget={budget_ms}", *args, url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), HANG_S)
        except asyncio.TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)  # the browser and its helper processes
            await proc.wait()
            raise AssertionError(f"chromium did not finish {url} in {HANG_S} s") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode} on {url}: {err.decode()[-2000:]}"
    return out


async def dump_dom(url: str, shot: Path | None = None, budget_ms: int = 15000) -> str:
    """The page's DOM once its scripts have run (as the user would see it, serialised); with
    `shot`, a PNG of that same page in a WINDOW-sized window saved there too (one load)."""
    extra = [f"--screenshot={shot}"] if shot else []
    return (await _run(url, "--dump-dom", *extra, budget_ms=budget_ms)).decode()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG that decodes whole and is not of one colour: its header (the
    first chunk is IHDR, by the format), then its image data inflated to the size the header
    promises (8-bit RGB or RGBA, as Chromium writes them)."""
    assert data[:8] == PNG_MAGIC, "not a PNG"
    chunks, pos = {}, 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + length])
        pos += 12 + length  # length, type, data, CRC
    (header,) = chunks[b"IHDR"]
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), f"a PNG of depth {depth}, colour type {colour}"
    pixels = zlib.decompress(b"".join(chunks[b"IDAT"]))
    assert len(pixels) == height * (1 + width * (3 if colour == 2 else 4)), "the image data is cut"
    assert len(set(pixels)) > 16, "a blank picture"
    return width, height
