"""The storage data plane (`POST /v2/storage/<op>`), what abdr needs of ACOS block storage
and the public API lacks (docs/driver-contract.md, "The AOC driver"): changed and allocated
extents of volume snapshots, NBD exports of volumes and snapshot views, and write leases
that order a client's write batch against snapshots."""

from __future__ import annotations

from typing import Any

from starter.simulators.aoc.errors import not_found
from starter.simulators.aoc.sim import Sim
from starter.simulators.aoc.storage import BLOCK_SIZE

Body = dict[str, Any]


def _vm(sim: Sim, body: Body) -> dict[str, Any]:
    vm = sim.store.get("vms", body.get("vm_id"))
    if vm is None or vm.get("entityAsyncStatus") == "CREATING":
        raise not_found(f"VM {body.get('vm_id')}")
    return vm


def _snap(sim: Sim, vm_id: str, snap_id: object) -> str | None:
    if snap_id is None:
        return None
    s = sim.store.get("vm_snapshots", snap_id)
    if s is None or s["vm"]["id"] != vm_id or s.get("entityAsyncStatus"):
        raise not_found(f"snapshot {snap_id} of VM {vm_id}")
    return str(snap_id)


def get_volume_extents(sim: Sim, body: Body) -> Body:
    vm = _vm(sim, body)
    snap = _snap(sim, vm["id"], body.get("snapshot_id"))
    base = _snap(sim, vm["id"], body.get("base_snapshot_id"))
    size, extents = sim.storage.extents(vm["id"], str(body.get("volume_id")), snap, base)
    return {"block_size": BLOCK_SIZE, "size": size, "extents": [e.model_dump() for e in extents]}


def export_volume(sim: Sim, body: Body) -> Body:
    vm = _vm(sim, body)
    snap = _snap(sim, vm["id"], body.get("snapshot_id"))
    uri, size, gen = sim.storage.export(vm["id"], str(body.get("volume_id")), snap)
    return {"uri": uri, "size": size, "generation": gen, "read_only": snap is not None, "block_size": BLOCK_SIZE}


def acquire_write_lease(sim: Sim, body: Body) -> Body:
    # A running VM's volumes take writes too: no guest runs here, so a test's writes play its guest's.
    vm = _vm(sim, body)
    lease, uri, size, gen = sim.storage.acquire(vm["id"], str(body.get("volume_id")))
    return {"lease_id": lease, "uri": uri, "size": size, "generation": gen, "ttl_s": sim.cfg.lease_ttl_s}


def release_write_lease(sim: Sim, body: Body) -> Body:
    vm = _vm(sim, body)
    sim.storage.release(vm["id"], str(body.get("lease_id")))
    return {"lease_id": body.get("lease_id")}


def get_storage_info(sim: Sim, body: Body) -> Body:
    """What a client asks first: whether (and how) this deployment exposes the storage access."""
    return {"block_size": BLOCK_SIZE, "protocols": ["nbd"], "write_leases": True}


OPS = {"get-storage-info": get_storage_info, "get-volume-extents": get_volume_extents, "export-volume": export_volume,
       "acquire-write-lease": acquire_write_lease, "release-write-lease": release_write_lease}
