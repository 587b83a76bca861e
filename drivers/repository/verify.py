"""Verify: re-read and re-hash every chunk the chosen points reference, and say exactly which
points and which byte ranges of which disks are damaged. Read-only: needs no lock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from drivers.repository.chunks import ChunkProblem
from drivers.repository.errors import CorruptChunk, CorruptManifest, PointNotFound
from drivers.repository.manifest import DIGEST_LEN, ZERO, RestorePoint

if TYPE_CHECKING:
    from drivers.repository import Repository

BATCH = 4096


class DamagedRange(BaseModel):
    point_id: str
    disk: str
    offset: int
    length: int
    problem: ChunkProblem
    digests: list[str] = Field(description="Hex digests of the damaged chunks in this range.")


class VerifyReport(BaseModel):
    points_checked: list[str] = Field(default_factory=list)
    chunks_checked: int = 0
    bytes_checked: int = 0  # stored bytes read
    damaged_chunks: dict[str, ChunkProblem] = Field(default_factory=dict)
    damaged: list[DamagedRange] = Field(default_factory=list)
    unreadable_points: dict[str, str] = Field(default_factory=dict)  # id -> why

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.unreadable_points

    @property
    def damaged_points(self) -> list[str]:
        return sorted({d.point_id for d in self.damaged} | set(self.unreadable_points))


def _check(repo: "Repository", digest: bytes) -> tuple[bytes, ChunkProblem | None, int]:
    try:
        blob = repo.store.read_blob(digest)
    except CorruptChunk as e:
        return digest, ChunkProblem(e.problem), 0
    try:
        repo.codec.decode(digest, blob)
    except CorruptChunk as e:
        return digest, ChunkProblem(e.problem), len(blob)
    return digest, None, len(blob)


def verify(repo: "Repository", point_ids: list[str] | None = None, *, workers: int | None = None) -> VerifyReport:
    report = VerifyReport()
    ids = repo.points.ids() if point_ids is None else list(point_ids)
    points: list[RestorePoint] = []
    for pid in ids:
        try:
            points.append(repo.points.read(pid))
        except PointNotFound:
            if point_ids is not None:
                raise
        except CorruptManifest as e:
            report.unreadable_points[pid] = str(e)
    report.points_checked = [p.id for p in points]

    digests: set[bytes] = set()
    for p in points:
        digests |= p.digests()
    bad: dict[bytes, ChunkProblem] = {}
    from drivers.repository.writer import _default_workers

    it = iter(digests)
    with ThreadPoolExecutor(workers or _default_workers()) as pool:
        while batch := list(islice(it, BATCH)):  # bounded: never millions of futures at once
            for d, problem, nbytes in pool.map(lambda d: _check(repo, d), batch):
                report.chunks_checked += 1
                report.bytes_checked += nbytes
                if problem is not None:
                    bad[d] = problem
    report.damaged_chunks = {d.hex(): p for d, p in sorted(bad.items())}
    if bad:
        for p in points:
            report.damaged.extend(_ranges(p, bad))
    return report


def _ranges(point: RestorePoint, bad: dict[bytes, ChunkProblem]) -> list[DamagedRange]:
    """Damaged byte ranges of one point: adjacent damaged chunks with the same problem merge."""
    out: list[DamagedRange] = []
    for dm in point.disks:
        packed = dm.chunks.packed
        last: DamagedRange | None = None
        for i in range(dm.chunk_count):
            e = packed[i * DIGEST_LEN : (i + 1) * DIGEST_LEN]
            if e == ZERO or e not in bad:
                last = None
                continue
            off, ln = dm.chunk_extent(i)
            if last is not None and last.problem == bad[e] and last.offset + last.length == off:
                last.length += ln
                if e.hex() not in last.digests:
                    last.digests.append(e.hex())
            else:
                last = DamagedRange(point_id=point.id, disk=dm.name, offset=off, length=ln,
                                    problem=bad[e], digests=[e.hex()])
                out.append(last)
    return out
