"""Verify: re-read and re-hash every chunk the chosen points reference, and say exactly which
points and which byte ranges of which disks are damaged. Needs no lock.

Besides reading, verify does two things to the repository (docs/repository-format.md §9.1):
it moves each chunk it proved damaged aside to `<digest>.bad`, so the next backup that
meets the same data finds it absent and writes it anew instead of deduplicating against
the damaged copy; and it writes its full report to `verify/last.jsonl`, which callers page
through instead of carrying thousands of damaged ranges in one message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from drivers.repository.chunks import ChunkProblem
from drivers.repository.errors import CorruptChunk, CorruptManifest, PointNotFound
from drivers.repository.fsutil import atomic_write, server_now
from drivers.repository.manifest import DIGEST_LEN, ZERO, RestorePoint
from drivers.repository.progress import (
    PROGRESS_INTERVAL,
    IOCap,
    MaintenanceProgress,
    ProgressFn,
    Ticker,
)

if TYPE_CHECKING:
    from drivers.repository import Repository

BATCH = 4096
BAD_SUFFIX = ".bad"


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
    missing_points: list[str] = Field(default_factory=list)  # expected (catalog) but no manifest
    unknown_points: list[str] = Field(default_factory=list)  # a manifest nobody expected
    quarantined: list[str] = Field(default_factory=list)  # damaged chunks moved aside to <digest>.bad

    @property
    def ok(self) -> bool:
        return not (self.damaged or self.unreadable_points or self.missing_points or self.unknown_points)

    @property
    def damaged_points(self) -> list[str]:
        """Points that cannot be restored whole: damaged chunks, unreadable or missing manifest."""
        return sorted({d.point_id for d in self.damaged} | set(self.unreadable_points) | set(self.missing_points))


def _check(repo: "Repository", cap: IOCap, digest: bytes) -> tuple[bytes, ChunkProblem | None, int]:
    try:
        blob = repo.store.read_blob(digest)
    except CorruptChunk as e:
        return digest, ChunkProblem(e.problem), 0
    cap.take(len(blob))
    try:
        repo.codec.decode(digest, blob)
    except CorruptChunk as e:
        return digest, ChunkProblem(e.problem), len(blob)
    return digest, None, len(blob)


def verify(repo: "Repository", point_ids: list[str] | None = None, *, workers: int | None = None,
           expected: set[str] | None = None, quarantine: bool = True, progress: ProgressFn | None = None,
           progress_interval: float = PROGRESS_INTERVAL, read_iops: int | None = None,
           unknown_grace: float = 0.0) -> VerifyReport:
    """Verify `point_ids` (default: every manifest). `expected`: the ids the caller's index
    (the catalog) lists for this repository; any of them without a manifest is reported
    missing, and any manifest not among them unknown. `read_iops` caps chunk reads;
    `progress` is called every `progress_interval` seconds of elapsed time. A manifest
    committed less than `unknown_grace` seconds ago (server time) is not unknown yet: the
    index records a point just after its commit."""
    report = VerifyReport()
    tick = Ticker(progress, progress_interval)
    cap = IOCap(read_iops)
    ids = repo.points.ids() if point_ids is None else list(point_ids)
    if expected is not None:
        if point_ids is not None:
            raise ValueError("expected= cross-checks a whole repository; it does not combine with point_ids")
        report.missing_points = sorted(expected - set(ids))
        report.unknown_points = _settled(repo, sorted(set(ids) - expected), unknown_grace)
    points: list[RestorePoint] = []
    for n, pid in enumerate(ids):
        tick(lambda: MaintenanceProgress(op="verify", phase="manifests", done=n, total=len(ids),
                                         damaged=len(report.unreadable_points)))
        try:
            points.append(repo.points.read(pid))
        except PointNotFound:
            if point_ids is not None:
                raise
            if expected is not None and pid in expected:  # deleted between the listing and the read
                report.missing_points = sorted({*report.missing_points, pid})
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
            for d, problem, nbytes in pool.map(lambda d: _check(repo, cap, d), batch):
                report.chunks_checked += 1
                report.bytes_checked += nbytes
                if problem is not None:
                    bad[d] = problem
                tick(lambda: MaintenanceProgress(op="verify", phase="chunks", done=report.chunks_checked,
                                                 total=len(digests), bytes_done=report.bytes_checked,
                                                 damaged=len(bad)))
    report.damaged_chunks = {d.hex(): p for d, p in sorted(bad.items())}
    if bad:
        for p in points:
            report.damaged.extend(_ranges(p, bad))
    if quarantine and bad:
        record_bad(repo, bad)
        report.quarantined = [d.hex() for d, problem in sorted(bad.items())
                              if problem is not ChunkProblem.MISSING and quarantine_chunk(repo, d)]
    tick(lambda: MaintenanceProgress(op="verify", phase="done", done=report.chunks_checked, total=len(digests),
                                     bytes_done=report.bytes_checked, damaged=len(bad)), force=True)
    write_report(repo, report)
    return report


def _settled(repo: "Repository", ids: list[str], grace: float) -> list[str]:
    if not ids or grace <= 0:
        return ids
    now = server_now(repo.layout.points)
    out = []
    for pid in ids:
        try:
            if repo.layout.point(pid).stat().st_mtime <= now - grace:
                out.append(pid)
        except FileNotFoundError:
            pass  # deleted since the listing: nothing to report
    return out


def quarantine_chunk(repo: "Repository", digest: bytes) -> bool:
    """Move a damaged chunk aside to `<digest>.bad` (as Proxmox Backup Server does), so the
    dedup lookup of the next backup finds it absent and stores the chunk anew. A backup may
    have replaced a torn file with a good copy since verify read it: the file moved aside is
    checked again and put back if it is good. True if a damaged file was moved aside."""
    path = repo.store.path(digest)
    aside = path.with_name(path.name + BAD_SUFFIX)
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return False
    try:
        repo.codec.decode(digest, aside.read_bytes())
    except CorruptChunk:
        return True
    try:
        os.link(aside, path)  # good after all (rewritten meanwhile): put it back
    except FileExistsError:
        pass  # written anew meanwhile
    aside.unlink()
    return False


def _bad_path(repo: "Repository") -> Path:
    return repo.layout.verify_runs / "bad-chunks"


def record_bad(repo: "Repository", digests: "Iterable[bytes]") -> None:
    """Append damaged or missing digests to `verify/bad-chunks` (packed, 32 bytes each), the
    list an incremental backup consults so it re-reads, rather than carries, such entries."""
    repo.layout.verify_runs.mkdir(exist_ok=True)
    fd = os.open(_bad_path(repo), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, b"".join(sorted(digests)))  # one write: appends never interleave mid-digest
    finally:
        os.close(fd)


def known_bad(repo: "Repository") -> set[bytes]:
    """Every digest a verify ever found damaged or missing (some may be healthy again)."""
    try:
        p = Path(_bad_path(repo)).read_bytes()
    except FileNotFoundError:
        return set()
    return {p[o : o + DIGEST_LEN] for o in range(0, len(p) - len(p) % DIGEST_LEN, DIGEST_LEN)}


# -- the report file ------------------------------------------------------------------------

def _report_path(repo: "Repository") -> Path:
    return repo.layout.verify_runs / "last.jsonl"


def write_report(repo: "Repository", report: VerifyReport) -> None:
    """One JSON line of counts, then one line per finding (kind + fields), in a stable order,
    so a listing can page through any number of findings with bounded memory."""
    repo.layout.verify_runs.mkdir(exist_ok=True)  # repositories made before verify wrote reports
    summary = {"kind": "summary", **report_counts(report)}
    lines = [json.dumps(summary)] + [json.dumps(f) for f in findings(report)]
    atomic_write(_report_path(repo), ("\n".join(lines) + "\n").encode(), durable=False)


def report_counts(report: VerifyReport) -> dict[str, int]:
    return {"points_checked": len(report.points_checked), "chunks_checked": report.chunks_checked,
            "bytes_checked": report.bytes_checked, "damaged_chunks": len(report.damaged_chunks),
            "damaged_ranges": len(report.damaged), "damaged_points": len(report.damaged_points),
            "unreadable_points": len(report.unreadable_points), "missing_points": len(report.missing_points),
            "unknown_points": len(report.unknown_points), "quarantined_chunks": len(report.quarantined)}


def findings(report: VerifyReport) -> Iterator[dict[str, object]]:
    """Every finding as a flat dict: point-level ones first (they are the fewest and the
    worst), then damaged ranges."""
    for pid in report.missing_points:
        yield {"kind": "missing_manifest", "point_id": pid, "detail": "the catalog lists it; no manifest"}
    for pid, why in sorted(report.unreadable_points.items()):
        yield {"kind": "unreadable_manifest", "point_id": pid, "detail": why}
    for pid in report.unknown_points:
        yield {"kind": "unknown_manifest", "point_id": pid, "detail": "a manifest the catalog does not list"}
    for r in report.damaged:
        yield {"kind": "damaged_range", **r.model_dump(mode="json")}


def read_findings(repo: "Repository", offset: int = 0, limit: int = 100) -> tuple[dict | None, list[dict]]:
    """The last report's counts and findings [offset, offset+limit), streamed from the file."""
    try:
        f = open(_report_path(repo), encoding="utf-8")
    except FileNotFoundError:
        return None, []
    with f:
        summary = json.loads(next(f, "null"))
        return summary, [json.loads(line) for line in islice(f, offset, offset + limit)]


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
