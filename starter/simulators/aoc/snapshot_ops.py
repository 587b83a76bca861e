"""VM snapshots: create (all volumes at one instant, with the VM's configuration of that
moment), delete, and rollback (the VM's volumes and configuration back to a snapshot's;
the VM keeps its name)."""

from __future__ import annotations

from typing import Any

from starter.simulators.aoc.errors import bad, not_found
from starter.simulators.aoc.filters import select
from starter.simulators.aoc.sim import Sim, public
from starter.simulators.aoc.store import Row, new_id, now

Body = dict[str, Any]
Result = list[dict[str, Any]]
CONSISTENT_TYPES = ("CRASH_CONSISTENT", "FILE_SYSTEM_CONSISTENT")
CONFIG_FIELDS = ("vcpu", "cpu", "memory", "description", "firmware", "ha", "guest_os_type", "vm_nics")


def create_vm_snapshot(sim: Sim, body: Body) -> Result:
    out = []
    for p in body.get("data") or []:
        with sim.store.lock:
            vm = sim.vm(p.get("vm_id"))
            sim.engine.check_free(vm["id"])
            name, ctype = p.get("name"), p.get("consistent_type", "CRASH_CONSISTENT")
            if ctype not in CONSISTENT_TYPES:
                raise bad("InvalidConsistentType", f"consistent_type {ctype!r} is not one of {CONSISTENT_TYPES}")
            if ctype == "FILE_SYSTEM_CONSISTENT" and vm["status"] == "RUNNING" and vm["vm_tools_status"] != "RUNNING":
                raise bad("VmToolsNotRunning", f"VM {vm['name']!r} ({vm['id']}) has no running VMTools: "
                          "a FILE_SYSTEM_CONSISTENT snapshot needs them")
            for s in sim.store.rows("vm_snapshots"):
                if s["vm"]["id"] == vm["id"] and s["name"] == name:
                    raise bad("SnapshotNameDuplicate", f"VM {vm['id']} already has a snapshot named {name!r} ({s['id']})")
            vols = {v["id"]: v for v in sim.store.rows("vm_volumes") if v.get("vm", {}).get("id") == vm["id"]}
            disks = [{"boot": d["boot"], "bus": d["bus"], "type": d["type"], "vm_volume_id": d["vm_volume"]["id"],
                      "name": d["vm_volume"]["name"], "size": vols[d["vm_volume"]["id"]]["size"],
                      "elf_storage_policy": vols[d["vm_volume"]["id"]]["elf_storage_policy"]} for d in vm["vm_disks"]]
            snap: Row = {"id": new_id(), "name": name, "vm": {"id": vm["id"], "name": vm["name"]},
                         "cluster": vm["cluster"], "consistent_type": ctype, "local_created_at": now(),
                         "entityAsyncStatus": "CREATING", "vm_disks": disks,
                         **{k: vm[k] for k in CONFIG_FIELDS}}
            sim.store.put("vm_snapshots", snap)
            sizes = {d["vm_volume_id"]: d["size"] for d in disks}

            def work(vm_id: str = vm["id"], snap_id: str = snap["id"], sizes: dict[str, int] = sizes) -> None:
                sim.storage.snapshot(vm_id, snap_id, sizes)
                sim.update("vm_snapshots", snap_id, entityAsyncStatus=None)

            def undo(snap_id: str = snap["id"]) -> None:
                sim.store.delete("vm_snapshots", snap_id)

            task = sim.engine.submit("create-vm-snapshot", [vm["id"]], vm["cluster"]["id"], work, undo)
            out.append({"task_id": task["id"], "data": public(snap)})
    return out


def delete_vm_snapshot(sim: Sim, body: Body) -> Result:
    out = []
    with sim.store.lock:
        snaps = select(sim.store.rows("vm_snapshots"), {"where": body.get("where") or {}})
        if not snaps:
            raise not_found(f"VM snapshot matching {body.get('where')}")
        for s in snaps:
            sim.engine.check_free(s["vm"]["id"], s["id"])

            def work(vm_id: str = s["vm"]["id"], snap_id: str = s["id"]) -> None:
                sim.storage.delete_snapshot(vm_id, snap_id)
                sim.store.delete("vm_snapshots", snap_id)

            task = sim.engine.submit("delete-vm-snapshot", [s["vm"]["id"], s["id"]], s["cluster"]["id"], work)
            out.append({"task_id": task["id"], "data": {"id": s["id"]}})
    return out


def rollback_vm(sim: Sim, body: Body) -> Result:
    snap_id = (body.get("data") or {}).get("snapshot_id")
    out = []
    with sim.store.lock:
        vms = select(sim.store.rows("vms"), {"where": body.get("where") or {}})
        if not vms:
            raise not_found(f"VM matching {body.get('where')}")
        for vm in vms:
            snap = sim.store.get("vm_snapshots", snap_id)
            if snap is None or snap["vm"]["id"] != vm["id"] or snap.get("entityAsyncStatus"):
                raise not_found(f"snapshot {snap_id} of VM {vm['id']}")
            sim.engine.check_free(vm["id"], snap["id"])
            sim.stopped(vm, "roll it back")

            def work(vm_id: str = vm["id"], snap: Row = snap) -> None:
                sim.storage.rollback(vm_id, snap["id"])
                _restore_records(sim, vm_id, snap)

            task = sim.engine.submit("rollback-vm", [vm["id"], snap["id"]], vm["cluster"]["id"], work)
            out.append({"task_id": task["id"], "data": public(vm)})
    return out


def _restore_records(sim: Sim, vm_id: str, snap: Row) -> None:
    """The VM's disks, volumes and configuration as the snapshot has them (not its name)."""
    vm = sim.vm(vm_id)
    keep = {d["vm_volume_id"] for d in snap["vm_disks"]}
    for d in vm["vm_disks"]:
        if d["vm_volume"]["id"] not in keep:
            sim.store.delete("vm_volumes", d["vm_volume"]["id"])
    disks = []
    for d in snap["vm_disks"]:
        vol = sim.store.get("vm_volumes", d["vm_volume_id"]) or {
            "id": d["vm_volume_id"], "cluster": vm["cluster"], "vm": {"id": vm_id}, "mounting": True,
            "local_created_at": now()}
        sim.store.put("vm_volumes", {**vol, "name": d["name"], "size": d["size"],
                                     "elf_storage_policy": d["elf_storage_policy"]})
        disks.append({"id": new_id(), "boot": d["boot"], "bus": d["bus"], "type": d["type"],
                      "vm_volume": {"id": d["vm_volume_id"], "name": d["name"]}})
    sim.update("vms", vm_id, vm_disks=disks, **{k: snap[k] for k in CONFIG_FIELDS})
