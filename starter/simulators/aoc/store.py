"""The simulator's resources on disk: one JSON file per resource (`<state>/<table>/<id>.json`,
written atomically), all of them in memory behind one lock. A restarted simulator finds
them again; tasks that were running when it stopped are marked FAILED."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.fsio import atomic_write_json

TABLES = ("clusters", "hosts", "vlans", "vms", "vm_volumes", "vm_snapshots", "tasks", "vm_export_files")
Row = dict[str, Any]


def new_id() -> str:
    """A CloudTower-style id (a cuid: 'c' and 24 lowercase alphanumerics)."""
    return "c" + uuid.uuid4().hex[:24]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        self.tables: dict[str, dict[str, Row]] = {t: {} for t in TABLES}
        for t in TABLES:
            d = root / t
            d.mkdir(parents=True, exist_ok=True)
            for f in d.glob("*.json"):
                row = json.loads(f.read_text())
                self.tables[t][row["id"]] = row
        for task in self.tables["tasks"].values():
            if task["status"] in ("PENDING", "EXECUTING", "PAUSED"):
                task.update(status="FAILED", error_code="SimulatorRestarted",
                            error_message="the AOC simulator restarted while this task ran", finished_at=now())
                self.put("tasks", task)

    def put(self, table: str, row: Row) -> Row:
        with self.lock:
            self.tables[table][row["id"]] = row
            # atomic (never torn) but not fsynced: a simulator's records need not survive a power cut
            atomic_write_json(self.root / table / f"{row['id']}.json", row, durable=False)
            return row

    def get(self, table: str, id_: object) -> Row | None:
        with self.lock:
            return self.tables[table].get(id_) if isinstance(id_, str) else None

    def delete(self, table: str, id_: str) -> None:
        with self.lock:
            self.tables[table].pop(id_, None)
            (self.root / table / f"{id_}.json").unlink(missing_ok=True)

    def rows(self, table: str, ids: list[object] | None = None) -> list[Row]:
        """Every row, or (fast) only those with one of `ids`."""
        with self.lock:
            t = self.tables[table]
            if ids is not None:
                return [t[i] for i in dict.fromkeys(ids) if isinstance(i, str) and i in t]
            return list(t.values())
