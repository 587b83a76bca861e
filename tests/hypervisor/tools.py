"""QEMU's own tools and libvirt's checkpoint/backup XML, as the tests drive them: the
commands in the order docs/libvirt-design-notes.md gives."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

GRANULARITY = 64 << 10  # a qcow2 bitmap's default: the image's cluster size


def run(*cmd: str | Path) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout


def bitmaps(disk: Path) -> dict[str, list[str]]:
    """name -> flags of the persistent bitmaps in a qcow2 ('in-use' on an image no QEMU has
    open means QEMU died with it loaded: the bitmap is inconsistent)."""
    info = json.loads(run("qemu-img", "info", "-U", "--output=json", disk))
    return {b["name"]: b["flags"] for b in info["format-specific"]["data"].get("bitmaps", [])}


def raw_copy(disk: Path, out: Path) -> bytes:
    """The guest-visible content of a qcow2, read by a separate qemu-img process (-U: the
    image may be open in a paused QEMU, which has flushed it)."""
    run("qemu-img", "convert", "-U", "-O", "raw", disk, out)
    return out.read_bytes()


def checkpoint_xml(name: str, disk: str = "vda") -> str:
    return (f"<domaincheckpoint><name>{escape(name)}</name><disks>"
            f"<disk name='{disk}' checkpoint='bitmap'/></disks></domaincheckpoint>")


def redefine_xml(name: str, disk: str = "vda") -> str:
    """Checkpoint metadata for a bitmap made outside libvirt (qemu-img on a stopped disk), for
    VIR_DOMAIN_CHECKPOINT_CREATE_REDEFINE: libvirt 9 creates no checkpoint for an inactive
    domain but takes this, and a later backup-begin can start from it."""
    return (f"<domaincheckpoint><name>{escape(name)}</name><creationTime>{int(time.time())}</creationTime>"
            f"<disks><disk name='{disk}' checkpoint='bitmap' bitmap={quoteattr(name)}/></disks></domaincheckpoint>")


def pull_backup_xml(sock: Path, scratch: Path, incremental: str | None = None, disk: str = "vda") -> str:
    inc = f"<incremental>{escape(incremental)}</incremental>" if incremental else ""
    return (f"<domainbackup mode='pull'>{inc}<server transport='unix' socket={quoteattr(str(sock))}/>"
            f"<disks><disk name='{disk}' backup='yes' type='file'><driver type='qcow2'/>"
            f"<scratch file={quoteattr(str(scratch))}/></disk></disks></domainbackup>")


@contextmanager
def qemu_nbd(disk: Path, sock: Path, *args: str) -> Iterator[Path]:
    """qemu-nbd serving a stopped qcow2 on a unix socket; it exits when its client leaves."""
    proc = subprocess.Popen(["qemu-nbd", "-f", "qcow2", "-k", str(sock), *args, str(disk)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(100):
            if sock.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        if not sock.exists():
            raise AssertionError(f"qemu-nbd did not start: {proc.communicate()[0]}")
        yield sock
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()


def clusters(extents: list[tuple[int, int]]) -> set[int]:
    """The bitmap clusters a list of byte extents covers."""
    out: set[int] = set()
    for off, length in extents:
        out.update(range(off // GRANULARITY, (off + length - 1) // GRANULARITY + 1))
    return out


def changed_clusters(a: bytes, b: bytes) -> set[int]:
    g = GRANULARITY
    return {i for i in range(len(a) // g) if a[i * g:(i + 1) * g] != b[i * g:(i + 1) * g]}


def patch(base: bytes, pieces: dict[int, bytes]) -> bytes:
    out = bytearray(base)
    for off, data in pieces.items():
        out[off:off + len(data)] = data
    return bytes(out)
