"""Prisma-style reads as the AOC takes them: `where` (field equality, `<f>_in`,
`<f>_not`, `<f>_contains`, `<f>_starts_with`, `<f>_gt/_gte/_lt/_lte`, nested relations such
as `cluster: {id}`, and `AND`/`OR`/`NOT`), `orderBy`/`order_by` (`<field>_ASC|_DESC`),
`first`, `skip`."""

from __future__ import annotations

from typing import Any

from starter.simulators.aoc.errors import bad

Row = dict[str, Any]
_OPS = ("_not_in", "_in", "_not", "_contains", "_starts_with", "_ends_with", "_gte", "_gt", "_lte", "_lt")


def matches(row: Row, where: Row | None) -> bool:
    if not where:
        return True
    for key, want in where.items():
        if key == "AND":
            if not all(matches(row, w) for w in _as_list(want)):
                return False
        elif key == "OR":
            if not any(matches(row, w) for w in _as_list(want)):
                return False
        elif key == "NOT":
            if any(matches(row, w) for w in _as_list(want)):
                return False
        elif not _field(row, key, want):
            return False
    return True


def _as_list(v: Any) -> list[Row]:
    return v if isinstance(v, list) else [v]


def _field(row: Row, key: str, want: Any) -> bool:
    if key in row:
        have = row[key]
        if isinstance(want, dict):  # a relation: {cluster: {id: ...}}
            if isinstance(have, list):
                return any(matches(h, want) for h in have if isinstance(h, dict))
            return isinstance(have, dict) and matches(have, want)
        return bool(have == want)
    for op in _OPS:
        if key.endswith(op) and key[: -len(op)] in row:
            return _compare(row[key[: -len(op)]], op, want)
    if key.endswith(("_some", "_every", "_none")):
        return True  # relation list filters the simulator does not model narrow nothing
    raise bad("InvalidFilter", f"unknown filter field {key!r}")


def _compare(have: Any, op: str, want: Any) -> bool:
    if op == "_in":
        return have in want
    if op == "_not_in":
        return have not in want
    if op == "_not":
        return bool(have != want)
    if have is None:
        return False
    if op == "_contains":
        return str(want) in str(have)
    if op == "_starts_with":
        return str(have).startswith(str(want))
    if op == "_ends_with":
        return str(have).endswith(str(want))
    return bool({"_gt": have > want, "_gte": have >= want, "_lt": have < want, "_lte": have <= want}[op])


def select(rows: list[Row], body: Row) -> list[Row]:
    """The rows a read returns: filtered, ordered, then skipped and cut to `first`."""
    out = [r for r in rows if matches(r, body.get("where"))]
    order = body.get("orderBy") or body.get("order_by")
    if order:
        field, _, direction = str(order).rpartition("_")
        if direction not in ("ASC", "DESC") or not field:
            raise bad("InvalidOrderBy", f"orderBy {order!r} is not <field>_ASC or <field>_DESC")
        out.sort(key=lambda r: (r.get(field) is None, r.get(field)), reverse=direction == "DESC")
    skip = int(body.get("skip") or 0)
    first = body.get("first")
    out = out[skip:]
    return out[: int(first)] if first is not None else out
