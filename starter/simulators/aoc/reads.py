"""Reads: `get-<resources>` with Prisma-style filters, ordering and pages."""

from __future__ import annotations

from typing import Any

from starter.simulators.aoc.filters import select
from starter.simulators.aoc.sim import Sim, public

TABLE_OF = {"get-clusters": "clusters", "get-hosts": "hosts", "get-vlans": "vlans", "get-vms": "vms", "get-vm-volumes": "vm_volumes",
            "get-vm-snapshots": "vm_snapshots", "get-tasks": "tasks",
            "get-vm-export-files": "vm_export_files"}


def read(sim: Sim, op: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    where = (body or {}).get("where") or {}
    ids = [where["id"]] if "id" in where else where.get("id_in")  # an index, not a scan of every task
    return [public(r) for r in select(sim.store.rows(TABLE_OF[op], ids if isinstance(ids, list) else None), body or {})]
