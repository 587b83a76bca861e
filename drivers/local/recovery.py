"""Finishing what a killed caller left half done. Runs under the VM's exclusive lock at the
start of every exclusive operation; each step is one an uninterrupted operation would have
taken anyway, so running it twice, or after a clean run, changes nothing."""

from __future__ import annotations

import shutil

from drivers.local.disk import writable_chain
from drivers.local.layout import VMPaths, remove_tmp_files
from drivers.local.meta import VMRecord


def repair(p: VMPaths, rec: VMRecord, block_size: int) -> None:
    remove_tmp_files(p.dir)
    known = {s.id for s in rec.snapshots}
    for d in p.snaps.iterdir():
        if d.name not in known:  # snapshot never committed, or deleted but not yet removed
            shutil.rmtree(d, ignore_errors=True)
    keep = {d.name for d in rec.config.disks}
    if rec.pending_rollback:  # a rollback in progress may have created its target's disks
        keep |= {d.name for d in rec.snapshots[rec.snap_index(rec.pending_rollback)].config.disks}
    for f in p.disks.glob("*.raw"):
        if f.stem not in keep:  # its disk left the config; contents maybe not yet preserved
            with writable_chain(p, rec, f.stem, block_size) as chain:
                chain.remove_live()
    if not rec.pending_rollback:
        for spec in rec.config.disks:
            if not p.live(spec.name).exists():  # added to the config just before a kill
                with writable_chain(p, rec, spec.name, block_size) as chain:
                    chain.create_live(spec.size_bytes)
