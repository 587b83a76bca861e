"""What abdr keeps of one VM whose disks are qcow2 chains (a libvirt VM beside its domain,
in `<cluster dir>/vms/<domain uuid>/state.json`; an AOC simulator VM in its state dir): the
qcow2 chain of each disk and the snapshots that name files of it (written atomically).

Per disk the chain is linear: `backing[file]` is the file below `file` (None for a base),
`active[disk]` the file the domain writes. A snapshot owns one frozen file per disk: its view
is that file and everything below. Taking a snapshot freezes the active file and puts a new,
empty overlay on top; deleting one merges the file above its own into it (qemu-img commit or
a libvirt block commit), so the chain never grows with deleted snapshots and no other view
changes. `merges` lists merges recorded but not yet finished: redone after a crash."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from drivers.base import NotFound
from drivers.fsio import atomic_write_json
from models.inventory import Consistency, SnapshotInfo, VMConfig

FORMAT = "abdr-libvirt-vm/1"


class Snap(BaseModel):
    id: str
    name: str
    created_at: datetime
    consistency: Consistency
    config: VMConfig
    files: dict[str, str]  # disk -> its frozen file (absolute path)

    def info(self, vm_id: str) -> SnapshotInfo:
        return SnapshotInfo(id=self.id, vm_id=vm_id, name=self.name, created_at=self.created_at,
                            consistency=self.consistency, config=self.config)


class Merge(BaseModel):
    disk: str
    child: str  # the file merged away
    parent: str  # the file it is committed into


class VMState(BaseModel):
    format: str = FORMAT
    seq: int = 0  # numbers new overlay files
    backing: dict[str, str | None] = Field(default_factory=dict)  # file -> the file below it
    active: dict[str, str] = Field(default_factory=dict)  # disk -> file the domain writes
    snapshots: list[Snap] = Field(default_factory=list)  # oldest first
    merges: list[Merge] = Field(default_factory=list)
    pending_rollback: str | None = None
    console_mark: int = 0  # the console log's size at the last power-on: where this boot's output starts

    def chain(self, top: str) -> list[Path]:
        """The chain read through `top`, top first."""
        out: list[Path] = []
        f: str | None = top
        seen: set[str] = set()
        while f is not None and f not in seen:
            seen.add(f)
            out.append(Path(f))
            f = self.backing.get(f)
        return out

    def snap_index(self, vm_id: str, snap_id: str) -> int:
        for i, s in enumerate(self.snapshots):
            if s.id == snap_id:
                return i
        raise NotFound(f"VM {vm_id} has no snapshot {snap_id!r}")

    def child_of(self, file: str) -> str | None:
        return next((f for f, b in self.backing.items() if b == file), None)

    def referenced(self) -> set[str]:
        refs = set(self.active.values())
        for s in self.snapshots:
            refs.update(s.files.values())
        return refs


def load(path: Path) -> VMState:
    try:
        return VMState.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        return VMState()


def save(path: Path, state: VMState) -> None:
    atomic_write_json(path, state.model_dump(mode="json"))
