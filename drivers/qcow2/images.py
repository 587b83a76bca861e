"""qcow2 image chains through QEMU's own tools (qemu-img), for drivers whose disks are
chains of qcow2 v3 files: a base and overlays, each overlay's backing file the one below.

Every open names the whole chain explicitly (a `json:` spec with QEMU's image locking off
on every layer): callers serialise access to a chain with their own locks, and the one
process that writes a file (a running QEMU or one qemu-nbd) never shares it with a writer.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from drivers.base import DriverError

CLUSTER = 64 * 1024  # qcow2 cluster size = the drivers' changed-block granularity
Chain = Sequence[Path]
"""A chain, top first: chain[0] is the image read, chain[i+1] the backing file of chain[i]."""


class ImageError(DriverError):
    """qemu-img refused or failed; the message carries its own words."""


def run(*args: str) -> str:
    try:
        p = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise ImageError("qemu-img is not installed (Debian package qemu-utils)") from None
    if p.returncode:
        raise ImageError(f"qemu-img {args[0]} failed: {(p.stderr or p.stdout).strip()}")
    return p.stdout


def chain_spec(chain: Chain) -> dict[str, Any]:
    """The block-driver options of a chain, top first, every layer without image locking."""
    spec: Any = None
    for path in reversed(chain):
        spec = {"driver": "qcow2", "file": {"driver": "file", "filename": str(path), "locking": "off"},
                "backing": spec}
    if spec is None:
        raise ValueError("an empty chain")
    return spec


def chain_filename(chain: Chain) -> str:
    return "json:" + json.dumps(chain_spec(chain))


def create(path: Path, size: int, thin: bool = True) -> None:
    """A new qcow2 v3 image reading as zeros; thick images get their space reserved now."""
    opts = f"compat=1.1,cluster_size={CLUSTER}" + ("" if thin else ",preallocation=falloc")
    run("create", "-q", "-f", "qcow2", "-o", opts, str(path), str(size))


def create_overlay(path: Path, backing: Path, size: int) -> None:
    """An empty overlay on `backing` (-u: the backing is not opened, so a process holding it
    does not matter; the size is given)."""
    run("create", "-q", "-f", "qcow2", "-o", f"compat=1.1,cluster_size={CLUSTER}", "-u",
        "-b", str(backing), "-F", "qcow2", str(path), str(size))


def copy_chain(chain: Chain, path: Path, thin: bool = True) -> None:
    """A new standalone qcow2 image holding what `chain` reads as (holes stay holes)."""
    opts = f"compat=1.1,cluster_size={CLUSTER}" + ("" if thin else ",preallocation=falloc")
    run("convert", "-q", "-O", "qcow2", "-o", opts, chain_filename(chain), str(path))


def info(path: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(run("info", "-U", "--output=json", str(path)))
    return out


def virtual_size(chain: Chain) -> int:
    return int(json.loads(run("info", "-U", "--output=json", chain_filename(chain[:1])))["virtual-size"])


def resize(chain: Chain, size: int) -> None:
    """Grow (or, for a rollback, shrink) the top image; bytes past the old end read as zeros."""
    run("resize", "-q", "--shrink", chain_filename(chain), str(size))


def commit(top: Path, base_chain: Chain) -> None:
    """Copy every cluster `top` holds into base_chain[0] (its backing file), leaving `top`
    as it was: afterwards base_chain[0] reads exactly as `top` did. Redoing it is harmless."""
    run("commit", "-q", "-d", chain_filename([top, *base_chain]))


def rebase_unsafe(path: Path, new_backing: Path) -> None:
    """Point `path` at another backing file with the same content (header only)."""
    run("rebase", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", str(new_backing), str(path))


def map_chain(chain: Chain) -> list[dict[str, Any]]:
    """qemu-img map of a chain: runs of {start, length, depth, present, zero, data}; `depth`
    is the index in `chain` of the layer that holds the run (len(chain) when none does).
    Metadata only: no guest data is read."""
    out: list[dict[str, Any]] = json.loads(run("map", "-U", "--output=json", chain_filename(chain)))
    return out


Map = list[dict[str, Any]]


def runs_in_top(chain: Chain, k: int, m: Map | None = None) -> list[tuple[int, int]]:
    """[start, end) byte runs held by one of the top k layers (written since chain[k]);
    `m`: the chain's map if the caller has it already."""
    return [(r["start"], r["start"] + r["length"]) for r in (m or map_chain(chain)) if r["present"] and r["depth"] < k]


def data_runs(chain: Chain, m: Map | None = None) -> list[tuple[int, int]]:
    """[start, end) byte runs that may read as non-zero."""
    return [(r["start"], r["start"] + r["length"]) for r in (m or map_chain(chain)) if r["data"]]
