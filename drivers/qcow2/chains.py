"""Operations on the qcow2 chains of a VMState that need no running hypervisor: the
changed and allocated runs of a view, a merge of a deleted snapshot's file on a stopped
chain, and a rollback's copy-back. The libvirt driver (for stopped domains) and the AOC
simulator (whose VMs never run a QEMU) share them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from drivers.base import block_runs_to_extents
from drivers.qcow2 import images
from drivers.qcow2.nbd import NbdImage
from drivers.qcow2.state import Merge, Snap, VMState
from models.inventory import Extent

COPY_CHUNK = 4 * 1024 * 1024


def depth_to(st: VMState, top: str, base: str) -> int | None:
    """How many files lie above `base` in the chain read through `top` (None: not in it)."""
    for i, f in enumerate(st.chain(top)):
        if str(f) == base:
            return i
    return None


Mapper = Callable[[images.Chain], images.Map]


def changed_runs(st: VMState, top: str, base: str, mapper: Mapper = images.map_chain) -> list[tuple[int, int]]:
    """Byte runs that may differ between the views `base` and `top` (metadata only; `mapper`
    maps a chain, a caller may cache it)."""
    k = depth_to(st, top, base)
    if k is None:  # not one chain (a disk removed and added again): everything either holds
        return (images.data_runs(st.chain(top), mapper(st.chain(top)))
                + images.data_runs(st.chain(base), mapper(st.chain(base))))
    return images.runs_in_top(st.chain(top), k, mapper(st.chain(top)))


def runs_to_extents(runs: Iterable[tuple[int, int]], block_size: int, size: int) -> list[Extent]:
    bs = block_size
    return block_runs_to_extents(((s // bs, -(-e // bs)) for s, e in runs if s < size), bs, size)


def commit_stopped(st: VMState, m: Merge) -> None:
    """The file work of a merge on a chain no process writes: `child` committed into
    `parent`, the file above `child` pointed at `parent`. Redoing it is harmless."""
    grandchild = st.child_of(m.child)
    if m.child in st.backing:
        images.commit(Path(m.child), st.chain(m.parent))
        if grandchild is not None:
            images.rebase_unsafe(Path(grandchild), Path(m.parent))


def relink(st: VMState, m: Merge) -> bool:
    """The bookkeeping of a finished merge: whatever named `child` names `parent`; returns
    whether `child` was the disk's active file. The caller saves the state, then unlinks."""
    grandchild = st.child_of(m.child)
    if grandchild is not None:
        st.backing[grandchild] = m.parent
    for s in st.snapshots:
        if s.files.get(m.disk) == m.child:
            s.files[m.disk] = m.parent
    was_active = st.active.get(m.disk) == m.child
    if was_active:
        st.active[m.disk] = m.parent
    st.backing.pop(m.child, None)
    st.merges = [x for x in st.merges if x != m]
    return was_active


def copy_back(st: VMState, disk: str, snap_file: str, size: int) -> None:
    """The live disk reads as the snapshot's file: the blocks that differ are written
    back through the normal write path (newer snapshots keep their frozen files)."""
    live = st.chain(st.active[disk])
    images.resize(live, size)  # first: QEMU zero-fills a regrown tail in the top file, which the map then shows
    k = depth_to(st, st.active[disk], snap_file)
    runs = images.runs_in_top(live, k) if k is not None else images.data_runs(live) + images.data_runs(st.chain(snap_file))
    runs = [(s, min(e, size)) for s, e in runs if s < size]
    if not runs:
        return
    src, dst = NbdImage(st.chain(snap_file), writable=False), NbdImage(live, writable=True)
    try:
        for s, e in runs:
            for at in range(s, e, COPY_CHUNK):
                n = min(COPY_CHUNK, e - at)
                dst.write(at, src.read(at, n))
        dst.flush()
    finally:
        src.close()
        dst.close()


def drop_live(st: VMState, disk: str) -> None:
    """The disk leaves the live chain; files snapshots name stay, the rest is unreferenced
    (the caller's sweep unlinks it)."""
    f = st.active.pop(disk, None)
    if f is None:
        return
    if f not in {x for s in st.snapshots for x in s.files.values()}:
        st.backing.pop(f, None)


def rollback_disks(st: VMState, snap: Snap, new_file: Callable[[str], Path], save: Callable[[], None]) -> None:
    """Every live disk reads as in `snap`: disks it lacks leave, disks removed since come
    back as a fresh overlay on its file (`new_file(disk)` names it; `save()` records it
    before anything else happens), the rest are copied back. Redoing it finishes it."""
    for disk in list(st.active):
        if disk not in snap.files:
            drop_live(st, disk)
    for spec in snap.config.disks:
        if spec.name not in st.active:
            f = new_file(spec.name)
            images.create_overlay(f, Path(snap.files[spec.name]), spec.size_bytes)
            st.backing[str(f)], st.active[spec.name] = snap.files[spec.name], str(f)
            save()
            continue
        copy_back(st, spec.name, snap.files[spec.name], spec.size_bytes)


def forget_snapshot(st: VMState, k: int) -> Snap:
    """Take snapshot k out of the state: the file above each of its files is to be merged
    into it (recorded in `merges`, done by the caller), a file nobody reads through any more
    is forgotten. Save the state next: the snapshot is gone from then on."""
    snap = st.snapshots.pop(k)
    for disk, f in snap.files.items():
        child = st.child_of(f)
        if child is not None:
            st.merges.append(Merge(disk=disk, child=child, parent=f))
        elif f not in st.referenced():
            st.backing.pop(f, None)
    return snap
