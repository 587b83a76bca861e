"""Which chunks of a disk to read, and which byte ranges of each, from a list of extents."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from models.inventory import Extent

Piece = tuple[int, int]  # (disk offset, length)


def merge(extents: Iterable[Extent | tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Sorted, merged [start, end) byte ranges clipped to the disk."""
    spans = sorted(
        (e.offset, e.end) if isinstance(e, Extent) else (e[0], e[0] + e[1]) for e in extents
    )
    out: list[tuple[int, int]] = []
    for s, e in spans:
        s, e = max(0, s), min(e, size)
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@dataclass
class ReadPlan:
    """Chunks to read. `whole_chunks`: read every touched chunk entirely (incremental: CBT
    says the chunk changed); otherwise read only the extents' bytes and treat the rest of the
    chunk as zero (full backup over the allocated extents)."""

    size: int
    chunk_size: int
    ranges: list[tuple[int, int]]
    whole_chunks: bool

    @property
    def chunk_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_len(self, i: int) -> int:
        return min(self.chunk_size, self.size - i * self.chunk_size)

    def _index_runs(self) -> Iterator[tuple[int, int]]:
        """Merged [first, last] chunk-index runs touched by the ranges."""
        cs = self.chunk_size
        run: tuple[int, int] | None = None
        for s, e in self.ranges:
            a, b = s // cs, (e - 1) // cs
            if run and a <= run[1] + 1:
                run = (run[0], max(run[1], b))
            else:
                if run:
                    yield run
                run = (a, b)
        if run:
            yield run

    @property
    def planned_chunks(self) -> int:
        return sum(b - a + 1 for a, b in self._index_runs())

    def tasks(self, start: int = 0) -> Iterator[tuple[int, list[Piece]]]:
        """(chunk index, pieces to read) in index order, for indices >= start."""
        cs = self.chunk_size
        if self.whole_chunks:
            for a, b in self._index_runs():
                for i in range(max(a, start), b + 1):
                    yield i, [(i * cs, self.chunk_len(i))]
            return
        cur: int | None = None
        pieces: list[Piece] = []
        for s, e in self.ranges:
            first = max(s // cs, start)
            for i in range(first, (e - 1) // cs + 1):
                lo, hi = max(s, i * cs), min(e, (i + 1) * cs)
                if lo >= hi:
                    continue
                if i != cur:
                    if cur is not None:
                        yield cur, pieces
                    cur, pieces = i, []
                pieces.append((lo, hi - lo))
        if cur is not None:
            yield cur, pieces

    def pieces(self, i: int) -> list[Piece]:
        """Pieces of one chunk (for re-reading a single chunk)."""
        if self.whole_chunks:
            return [(i * self.chunk_size, self.chunk_len(i))]
        lo, hi = i * self.chunk_size, i * self.chunk_size + self.chunk_len(i)
        return [(max(s, lo), min(e, hi) - max(s, lo)) for s, e in self.ranges if s < hi and e > lo]
