"""Output for the CLI: `--json` for scripts, rich tables and lines for people, the
formatting of sizes and times, and the line a started workflow prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from models.plans import RunResult
from models.restore_points import RestorePointSummary

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays ONE line, however long


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2, default=str) + "\n")


def emit(value: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    emit_json(value) if as_json else render(value)


def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def say(text: str) -> None:
    """A line for people; long lines (links, ids) are not broken at the terminal's width."""
    console.print(text, soft_wrap=True, highlight=False)


UNBOUNDED = 100_000  # wider than any table: measuring against it gives the table's natural width


def table(rows: list[dict[str, Any]] | list[BaseModel], columns: list[str], title: str | None = None) -> None:
    """A rich table whose cells fold instead of being cut short: ids stay copyable. A row that
    is a model shows its fields as `--json` writes them. Output that is not a terminal (a
    pipe, a file, a script) gets the table at its natural width: every cell on one line,
    so `grep` and `awk` see whole IDs, whatever COLUMNS says."""
    t = Table(title=title)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        r = row.model_dump(mode="json") if isinstance(row, BaseModel) else row
        t.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    if console.is_terminal:
        console.print(t)
        return
    natural = Measurement.get(console, console.options.update_width(UNBOUNDED), t).maximum
    # Console.print clamps a width to the console's own, so a console of that width prints it.
    Console(width=max(natural, console.width), no_color=console.no_color).print(t)


def human_bytes(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(n)


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(max(seconds, 0))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m:02d}m"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def when(at: datetime | str | None) -> str:
    if not at:
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return (at.astimezone(timezone.utc) if at.tzinfo else at).strftime("%Y-%m-%d %H:%M:%SZ")


def point_row(p: RestorePointSummary) -> dict:
    """A restore point as a table row (`restore-point list`, `replica points`)."""
    return {"id": p.id, "plan": p.plan, "vm": f"{p.cluster}/{p.vm}", "type": p.type,
            "creation": p.creation, "state": p.state, "created": when(p.created_at),
            "repository": p.repository, "size": human_bytes(p.logical_bytes),
            "stored": human_bytes(p.stored_bytes)}


POINT_COLUMNS = ["id", "plan", "vm", "type", "creation", "state", "created", "repository", "size", "stored"]


def render_backup_run(r: dict) -> None:
    rows = []
    for v in r["vms"]:
        disks = v.get("disks", [])
        kind = v.get("type") or ""
        if kind == "FULL" and v.get("full_reason"):
            kind += f" ({v['full_reason']})"
        rows.append({"vm": f"{v['vm']['cluster']}/{v['vm']['vm']}", "ok": "yes" if v["ok"] else "[red]no[/red]",
                     "point": v.get("point_id"), "type": kind,
                     "read": human_bytes(sum(d["read_bytes"] for d in disks)),
                     "new": human_bytes(sum(d["new_bytes"] for d in disks)), "error": v.get("error")})
    columns = ["vm", "ok", "point", "type", "read", "new"] + (["error"] if any(x["error"] for x in rows) else [])
    table(rows, columns, f"backup plan {r['plan']}")
    colour = "green" if r["result"] == RunResult.SUCCESS else "red"
    say(f"result: [{colour}]{r['result']}[/{colour}] {r.get('skipped_reason', '')}\n  {r['ui']}")


def show_workflow(client: Any, handle: Any, as_json: bool, what: str) -> None:
    info = {"workflow_id": handle.id, "run_id": handle.result_run_id, "ui": client.ui_link(handle.id)}
    if as_json:
        emit_json(info)
    else:
        say(f"{what} started: workflow [bold]{handle.id}[/bold]\n  {info['ui']}")
