"""The local cluster's name index: `names/<VM name>` is a symlink to the VM's id, so finding
a VM by name (every backup's prepare, a plan's check of its VMs) reads one link and one
record instead of every VM's record (at 10,000 VMs one scan took 0.15 s).

Every entry is a hint, checked against the record it names: a dangling or stale entry (a
crash between writing it and creating the VM, a rename) reads as absent. The index is
*complete* once `names/.complete` exists: then every VM has its entry, because each entry
is written (durably) before the VM appears under its name, and a VM missing from the
index has no such name. A cluster made before the index gets it filled by one scan under
the cluster lock, the first time a writer needs it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from drivers.base import NotFound
from drivers.fsio import fsync_dir
from drivers.local.layout import ClusterPaths
from drivers.local.meta import VMRecord, load_record

COMPLETE = ".complete"


class NameIndex:
    def __init__(self, paths: ClusterPaths) -> None:
        self.paths = paths
        self.dir = paths.root / "names"

    def complete(self) -> bool:
        return (self.dir / COMPLETE).exists()

    def lookup(self, name: str) -> VMRecord | None:
        """The VM the entry for `name` names, if it exists and still has that name."""
        try:
            vm_id = os.readlink(self.dir / name)
            rec = load_record(self.paths.vm(vm_id).meta)
        except (OSError, NotFound, ValueError):  # no entry, or it names no VM
            return None
        return rec if rec.config.name == name else None

    def point(self, name: str, vm_id: str, durable: bool = True) -> None:
        """Make `names/<name>` name `vm_id` (atomically: a link beside it, renamed over it)."""
        self.dir.mkdir(exist_ok=True)
        tmp = self.dir / f".{name}.{vm_id}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(vm_id, tmp)
        os.replace(tmp, self.dir / name)
        if durable:
            fsync_dir(self.dir)

    def forget(self, name: str, vm_id: str) -> None:
        """Drop the entry for `name` if it still names `vm_id` (a stale one is harmless, but
        left it would cost a record read per lookup of that name)."""
        try:
            if os.readlink(self.dir / name) == vm_id:
                (self.dir / name).unlink()
        except OSError:  # no entry
            pass

    def ensure_complete(self, scan: Callable[[], Iterable[VMRecord]]) -> None:
        """Fill the index from a scan of every VM and mark it complete. Call under the
        cluster lock (no VM is created or renamed meanwhile)."""
        if self.complete():
            return
        self.dir.mkdir(exist_ok=True)
        for rec in scan():
            self.point(rec.config.name, rec.id, durable=False)
        fsync_dir(self.dir)
        (self.dir / COMPLETE).touch()
        fsync_dir(self.dir)
