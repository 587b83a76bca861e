"""The cluster driver contract: one narrow, block-oriented protocol every hypervisor backend
(local, libvirt/QEMU, AOC REST) implements, its error hierarchy, and small extent helpers.

Drivers are synchronous: activities call them from a thread pool. Semantics of every method
are written down in docs/driver-contract.md; the contract suite in tests/drivers checks them.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from pydantic import ValidationError

from models.inventory import VM, Consistency, Extent, GuestSigns, SnapshotInfo, VMConfig, name_problem


# ---------------------------------------------------------------------------- errors
class DriverError(Exception):
    """Base of every error a driver raises on purpose. Messages name the VM/disk/snapshot and
    the rule that was broken, so they can be shown to an operator as they are."""


class NotFound(DriverError):
    """The VM, disk or snapshot does not exist (or no longer exists)."""


class AlreadyExists(DriverError):
    """A VM (in the cluster) or snapshot (in the VM) with that name exists already."""


class InvalidState(DriverError):
    """The object exists but is in the wrong state for the operation (e.g. rollback of a
    running VM, an interrupted rollback not yet redone)."""


class ResourceLocked(DriverError):
    """Another task holds the resource; retrying later may succeed."""


class Unsupported(DriverError):
    """The driver or the request's parameters cannot do this (e.g. shrinking a disk)."""


class GuestToolsMissing(Unsupported):
    """A FILE_SYSTEM_CONSISTENT snapshot was asked of a VM without guest tools."""


class ClusterUnreachable(DriverError):
    """The cluster's manager (an AOC) does not answer at all; it may come back."""


ANSWER_WITHIN: ContextVar[float | None] = ContextVar("abdr_answer_within", default=None)
"""How long the calls of this thread wait for a cluster manager that does not answer before
raising ClusterUnreachable (None: the driver's own patience, which rides out a restart). A
probe sets it short: 'the manager does not answer' is then its answer, not a timeout."""


class OperationTimeout(DriverError):
    """The operation did not finish in time (e.g. the guest ignored a graceful shutdown)."""


class OutOfRange(DriverError, ValueError):
    """A read or write outside the disk, or a negative/misaligned argument."""


class InvalidName(DriverError, ValueError):
    """A user-given name (VM, disk, snapshot, NIC, network) breaks the naming rules."""


# ---------------------------------------------------------------------------- handles
Bytes = bytes | bytearray | memoryview
"""What writes accept: any contiguous byte buffer (not copied; do not change it mid-call)."""


@runtime_checkable
class DiskHandle(Protocol):
    """An open disk (live or a snapshot's view). Keep it open for many reads: opening costs
    metadata loads, reads do not. A handle is used by one thread at a time."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset` (holes read as zeros). Out of range: OutOfRange."""
        ...

    def write(self, offset: int, data: Bytes) -> None:
        """Write into the live disk (writable handles only; snapshots are read-only)."""
        ...

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        """Several writes as one batch (one durability barrier instead of one per write)."""
        ...

    def flush(self) -> None:
        """Make every completed write durable."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# ---------------------------------------------------------------------------- driver
@runtime_checkable
class ClusterDriver(Protocol):
    """One cluster's VMs, their snapshots and their disk blocks."""

    cluster: str
    """The cluster's name (VM.cluster of every VM returned)."""
    block_size: int
    """Changed-block-tracking granularity in bytes; every extent returned is aligned to it
    (except that the last one may end at the disk's size)."""

    # inventory
    def list_vms(self) -> list[VM]: ...
    def get_vm(self, vm_id: str) -> VM: ...
    def find_vm(self, name: str) -> VM | None: ...

    # lifecycle
    def create_vm(self, config: VMConfig) -> VM: ...
    def delete_vm(self, vm_id: str) -> None: ...
    def update_vm_config(self, vm_id: str, config: VMConfig) -> VM: ...

    # power and network
    def power_on(self, vm_id: str) -> VM: ...
    def power_off(self, vm_id: str) -> VM: ...
    def shutdown(self, vm_id: str, timeout_s: float) -> VM: ...
    def attach_network(self, vm_id: str, nic_name: str, network: str) -> VM: ...
    def guest_signs(self, vm_id: str) -> GuestSigns: ...

    # snapshots
    def create_snapshot(
        self, vm_id: str, name: str, consistency: Consistency = Consistency.CRASH_CONSISTENT
    ) -> SnapshotInfo: ...
    def list_snapshots(self, vm_id: str) -> list[SnapshotInfo]: ...
    def get_snapshot(self, vm_id: str, snap_id: str) -> SnapshotInfo: ...
    def delete_snapshot(self, vm_id: str, snap_id: str) -> None: ...
    def rollback(self, vm_id: str, snap_id: str) -> VM: ...

    # extents (changed-block tracking)
    def allocated_extents(self, vm_id: str, disk: str, snap_id: str | None = None) -> list[Extent]: ...
    def changed_extents(
        self, vm_id: str, disk: str, base_snap_id: str, snap_id: str | None = None
    ) -> list[Extent]: ...

    # data
    def open_disk(
        self, vm_id: str, disk: str, snap_id: str | None = None, writable: bool = False
    ) -> DiskHandle: ...
    def read(self, vm_id: str, disk: str, offset: int, length: int, snap_id: str | None = None) -> bytes: ...
    def write(self, vm_id: str, disk: str, offset: int, data: Bytes) -> None: ...


# ---------------------------------------------------------------------------- helpers
@runtime_checkable
class MayLackChangeTracking(Protocol):
    """A driver whose cluster may not track changed blocks (an AOC without the storage
    access): its changed extents are then whole disks, and it says why."""

    def full_read_reason(self) -> str | None: ...


def full_read_reason(driver: object) -> str | None:
    """Why every backup of this driver's VMs must read whole disks, or None if it need not."""
    return driver.full_read_reason() if isinstance(driver, MayLackChangeTracking) else None


@runtime_checkable
class ClonesFromSnapshot(Protocol):
    """A driver whose cluster makes a new VM from a snapshot itself (the AOC's
    rebuild-vm-from-snapshot), with no data passing through abdr."""

    def clone_from_snapshot(self, vm_id: str, snap_id: str, config: VMConfig) -> VM:
        """A new, stopped VM with `config`'s name, description, CPU, memory and NICs and the
        snapshot's disks (same names and sizes), each reading as the snapshot does."""
        ...


class OneShotIO:
    """`read` and `write` of the protocol as one-shot conveniences over `open_disk`."""

    def open_disk(self, vm_id: str, disk: str, snap_id: str | None = None, writable: bool = False) -> DiskHandle:
        raise NotImplementedError

    def read(self, vm_id: str, disk: str, offset: int, length: int, snap_id: str | None = None) -> bytes:
        with self.open_disk(vm_id, disk, snap_id) as h:
            return h.read(offset, length)

    def write(self, vm_id: str, disk: str, offset: int, data: Bytes) -> None:
        with self.open_disk(vm_id, disk, writable=True) as h:
            h.write(offset, data)
            h.flush()


class BatchTarget(Protocol):
    """What BatchedWrites writes to: a writable DiskHandle, or anything else with its
    `write_many` and `flush` (the benchmark's plain restore file)."""

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None: ...

    def flush(self) -> None: ...


class BatchedWrites:
    """Many small writes to a handle as few `write_many` batches of up to `limit` bytes: one
    lock and one durability barrier per batch, not per write (the libvirt driver's cost is
    per call). The data is copied: callers may reuse their buffers. `flush()` writes what is
    pending and flushes the handle, so progress reported after it is durable."""

    def __init__(self, handle: BatchTarget, limit: int = 8 << 20) -> None:
        self.handle, self.limit = handle, limit
        self.pending: list[tuple[int, Bytes]] = []
        self.size = 0

    def write(self, offset: int, data: Bytes) -> None:
        self.pending.append((offset, bytes(data)))
        self.size += len(data)
        if self.size >= self.limit:
            self.drain()

    def drain(self) -> None:
        if self.pending:
            self.handle.write_many(self.pending)
            self.pending, self.size = [], 0

    def flush(self) -> None:
        self.drain()
        self.handle.flush()


def validate_name(value: object, what: str) -> str:
    """Refuse names that could escape a directory or surprise a shell, saying which rule
    broke (models.inventory.name_problem, the wording every refusal of a name shares).
    Drivers call it on every name they get as a plain string."""
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, got {type(value).__name__}")
    if (why := name_problem(value)) is not None:
        raise InvalidName(f"{what} {why}")
    return value


def check_config(config: VMConfig) -> VMConfig:
    """A config a driver may act on: every name through validate_name (with its specific
    message), then the model's own rules again (model_construct() skips them)."""
    validate_name(config.name, "VM name")
    for d in config.disks:
        validate_name(d.name, f"disk name of VM {config.name!r}")
    for n in config.nics:
        validate_name(n.name, f"NIC name of VM {config.name!r}")
        validate_name(n.network, f"network of NIC {n.name!r}")
    try:
        return VMConfig.model_validate(config.model_dump())
    except ValidationError as e:
        raise DriverError(f"config of VM {config.name!r} is invalid: {e}") from None


def block_runs_to_extents(
    runs: Iterable[tuple[int, int]], block_size: int, size: int
) -> list[Extent]:
    """[start_block, end_block) runs (any order, may overlap) -> merged, sorted extents,
    clipped to `size` bytes."""
    out: list[Extent] = []
    cur_s = cur_e = -1
    for s, e in sorted(runs):
        if s >= e:
            continue
        if s <= cur_e:
            cur_e = max(cur_e, e)
            continue
        if cur_e > cur_s:
            out.extend(_extent(cur_s, cur_e, block_size, size))
        cur_s, cur_e = s, e
    if cur_e > cur_s:
        out.extend(_extent(cur_s, cur_e, block_size, size))
    return out


def blocks_to_extents(blocks: Iterable[int], block_size: int, size: int) -> list[Extent]:
    """Block numbers -> merged, sorted extents clipped to `size`."""
    runs: list[tuple[int, int]] = []
    for b in sorted(set(blocks)):
        if runs and runs[-1][1] == b:
            runs[-1] = (runs[-1][0], b + 1)
        else:
            runs.append((b, b + 1))
    return block_runs_to_extents(runs, block_size, size)


def extents_to_blocks(extents: Iterable[Extent], block_size: int) -> set[int]:
    """Every block an extent touches (for tests and small disks; O(blocks))."""
    out: set[int] = set()
    for e in extents:
        out.update(range(e.offset // block_size, (e.end + block_size - 1) // block_size))
    return out


def _extent(s: int, e: int, block_size: int, size: int) -> list[Extent]:
    off, end = s * block_size, min(e * block_size, size)
    return [Extent(offset=off, length=end - off)] if end > off else []
