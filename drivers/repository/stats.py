"""Space accounting: what the chunk store holds, what each point is, and the filesystem."""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel

from drivers.repository.errors import CorruptManifest, PointNotFound
from models.restore_points import PointCreation, PointType

if TYPE_CHECKING:
    from drivers.repository import Repository


class PointStats(BaseModel):
    id: str
    vm_id: str
    vm_name: str
    plan: str | None
    created_at: datetime
    type: PointType
    creation: PointCreation
    logical_bytes: int  # sum of disk sizes
    new_bytes: int  # stored bytes this point's backup added (compressed)
    read_bytes: int
    chunks: int
    zero_chunks: int


class RepoStats(BaseModel):
    chunk_count: int
    stored_bytes: int  # size of all chunk files (headers included)
    points: list[PointStats]
    logical_bytes: int  # sum over points: what a non-deduplicating store would hold
    fs_total_bytes: int
    fs_used_bytes: int
    fs_free_bytes: int  # available to this (unprivileged) user

    @property
    def reduction_ratio(self) -> float:
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else 0.0


def repo_stats(repo: "Repository") -> RepoStats:
    count = size = 0
    for e in repo.store.iter_files():
        if not e.name.startswith("."):
            try:
                size += e.stat().st_size
                count += 1
            except FileNotFoundError:
                pass
    points = []
    for pid in repo.points.ids():
        try:
            p = repo.points.read(pid)
        except (PointNotFound, CorruptManifest):
            continue
        points.append(PointStats(
            id=p.id, vm_id=p.vm_id, vm_name=p.vm_name, plan=p.plan, created_at=p.created_at, type=p.type,
            creation=p.creation, logical_bytes=p.logical_size, new_bytes=p.new_bytes,
            read_bytes=sum(d.stats.read_bytes for d in p.disks),
            chunks=sum(d.chunk_count for d in p.disks), zero_chunks=sum(d.stats.zero_chunks for d in p.disks),
        ))
    points.sort(key=lambda s: (s.created_at, s.id))
    st = os.statvfs(repo.root)
    return RepoStats(
        chunk_count=count, stored_bytes=size, points=points, logical_bytes=sum(p.logical_bytes for p in points),
        fs_total_bytes=st.f_blocks * st.f_frsize, fs_used_bytes=(st.f_blocks - st.f_bfree) * st.f_frsize,
        fs_free_bytes=st.f_bavail * st.f_frsize,
    )
