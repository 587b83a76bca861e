"""The local driver's per-VM metadata record (vm.json): config, power state, the snapshot
chain (oldest first) and the local-only simulation knobs. Written only by atomic rename."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from drivers.base import NotFound
from drivers.local.layout import atomic_write_json
from models.inventory import VM, PowerState, SnapshotInfo, VMConfig


class VMRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = 1
    id: str
    config: VMConfig
    power_state: PowerState = PowerState.STOPPED
    snapshots: list[SnapshotInfo] = Field(default_factory=list, description="Oldest first.")
    refuse_shutdown: bool = Field(
        default=False, description="Simulates a guest that ignores graceful shutdown."
    )
    pending_rollback: str | None = Field(
        default=None, description="Snapshot id of a rollback that started and has not finished."
    )

    def to_vm(self, cluster: str) -> VM:
        return VM(id=self.id, cluster=cluster, config=self.config, power_state=self.power_state)

    def snap_index(self, snap_id: str) -> int:
        for i, s in enumerate(self.snapshots):
            if s.id == snap_id:
                return i
        raise NotFound(f"VM {self.config.name!r} ({self.id}) has no snapshot {snap_id}")

    def cow_needed(self, disk: str) -> bool:
        """A write to `disk` must preserve old blocks iff some snapshot can show that disk."""
        return any(disk in (d.name for d in s.config.disks) for s in self.snapshots)


def load_record(path: Path) -> VMRecord:
    try:
        with open(path, "rb") as f:
            return VMRecord.model_validate(json.loads(f.read()))
    except FileNotFoundError:
        raise NotFound(f"VM {path.parent.name} does not exist") from None


def load_record_fd(fd: int) -> VMRecord:
    st = os.fstat(fd)
    return VMRecord.model_validate(json.loads(os.pread(fd, st.st_size, 0)))


def save_record(path: Path, rec: VMRecord) -> None:
    atomic_write_json(path, rec.model_dump(mode="json"))
