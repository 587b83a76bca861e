"""Where a local cluster keeps things, how user names are kept inside it, and the locks and
atomic-file helpers every other module of the local driver relies on.

    <root>/cluster.json           {"format": ..., "name": ..., "block_size": ...}
    <root>/cluster.lock           flock: VM create/delete/rename (name uniqueness)
    <root>/tmp/                   staging for create_vm, trash for delete_vm (garbage when
                                  nobody holds cluster.lock)
    <root>/vms/<vm-id>/vm.json    VMRecord (config, power state, snapshot chain)
    <root>/vms/<vm-id>/vm.lock    flock: metadata changes and writes (EX), snapshot reads (SH)
    <root>/vms/<vm-id>/disks/<disk>.raw          live disk, sparse raw file
    <root>/vms/<vm-id>/snaps/<snap-id>/<disk>.undo|.idx   undo store (see undo.py)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from drivers.base import DriverError, NotFound, validate_name
from drivers.fsio import acquire, atomic_write_json, fsync_dir, locked, pwrite_all  # noqa: F401  (re-exported)

safe_name = validate_name  # user names become file names here: see validate_name

FORMAT = "abdr-local/1"
VM_ID_RE = re.compile(r"^vm-[0-9a-f]{12}$")
SNAP_ID_RE = re.compile(r"^snap-[0-9a-f]{12}$")


def check_vm_id(vm_id: object) -> str:
    if not isinstance(vm_id, str) or not VM_ID_RE.match(vm_id):
        raise NotFound(f"no VM with id {vm_id!r} (local VM ids look like vm-<12 hex digits>)")
    return vm_id


def check_snap_id(vm_id: str, snap_id: object) -> str:
    if not isinstance(snap_id, str) or not SNAP_ID_RE.match(snap_id):
        raise NotFound(f"VM {vm_id} has no snapshot {snap_id!r} (ids look like snap-<12 hex digits>)")
    return snap_id


def _only_init_leftovers(p: Path) -> bool:
    """Empty, or holding only what an init killed before writing cluster.json leaves: the
    lock file, empty vms/ and tmp/, and the marker's temp file."""
    for e in p.iterdir():
        if e.name in ("vms", "tmp") and e.is_dir() and not e.is_symlink():
            if any(e.iterdir()):
                return False
        elif not (e.name == "cluster.lock" or (e.name.startswith(".cluster.json.") and e.name.endswith(".tmp"))):
            return False
    return True


def check_cluster_root(root: str | os.PathLike[str], name: str | None = None) -> None:
    """A cluster directory is an abdr cluster (its marker cluster.json is there) or empty or
    new: the driver takes over <root>/tmp/ and <root>/vms/ (it empties tmp/ on every VM
    create and delete), so `--path /var` must never be adopted. `name`: the cluster an
    existing one must hold. Changes nothing."""
    p = Path(root)
    if not p.is_absolute():
        raise DriverError(f"cluster path {p} must be absolute")
    if not p.exists():
        return
    if not p.is_dir():
        raise DriverError(f"cluster path {p} is not a directory")
    marker = p / "cluster.json"
    if marker.is_file():
        try:
            meta = json.loads(marker.read_text())
            fmt, held = meta.get("format"), meta.get("name")
        except (OSError, ValueError, AttributeError):
            fmt = held = None
        if fmt != FORMAT:
            raise DriverError(f"cluster path {p} holds a cluster.json that is not an abdr cluster's ({FORMAT})")
        if name is not None and held != name:
            raise DriverError(f"cluster path {p} holds cluster {held!r}, not {name!r}")
        return
    if not _only_init_leftovers(p):
        raise DriverError(f"cluster path {p} is not empty and is not an abdr cluster (no cluster.json): "
                          "give a new or empty directory, or an existing abdr cluster's")


class ClusterPaths:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / "cluster.json"
        self.lock = root / "cluster.lock"
        self.tmp = root / "tmp"
        self.vms = root / "vms"

    def vm(self, vm_id: str) -> "VMPaths":
        return VMPaths(self.vms / check_vm_id(vm_id))


class VMPaths:
    def __init__(self, d: Path) -> None:
        self.dir = d
        self.meta = d / "vm.json"
        self.lock = d / "vm.lock"
        self.disks = d / "disks"
        self.snaps = d / "snaps"

    def live(self, disk: str) -> Path:
        return self.disks / f"{disk}.raw"

    def snap(self, snap_id: str) -> Path:
        return self.snaps / snap_id


def remove_tmp_files(d: Path) -> None:
    """Temp files of atomic_write_json left by a killed writer."""
    for p in d.glob(".*.tmp"):
        p.unlink(missing_ok=True)


