"""VM changes: create, delete, update, power, disks (volumes) and NICs. Each is checked when
asked for, then runs as a task holding the VM (or returns ResourceLocked)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starter.simulators.aoc.errors import bad
from starter.simulators.aoc.filters import select
from starter.simulators.aoc.sim import Sim, public
from starter.simulators.aoc.store import Row, new_id, now

Body = dict[str, Any]
Result = list[dict[str, Any]]
THIN, THICK = "REPLICA_2_THIN_PROVISION", "REPLICA_2_THICK_PROVISION"


def _targets(sim: Sim, body: Body) -> list[Row]:
    vms = select(sim.store.rows("vms"), {"where": body.get("where") or {}})
    if not vms:
        raise bad("NotFound", f"no VM matches {body.get('where')}")
    return vms


def _nic(sim: Sim, p: Body, cluster_id: str) -> Row:
    vlan = sim.vlan(p.get("connect_vlan_id"), cluster_id)
    return {"id": new_id(), "local_id": p.get("local_id") or new_id(), "mac_address": p.get("mac_address") or "",
            "ip_address": p.get("ip_address"), "enabled": p.get("enabled", True), "model": p.get("model", "VIRTIO"),
            "vlan": {"id": vlan["id"], "name": vlan["name"]}}


def _new_disks(sim: Sim, vm: Row, params: list[Body], first_boot: int) -> list[tuple[Row, Row]]:
    """(vm_disk, vm_volume) rows for mount_new_create_disks, not stored yet."""
    out = []
    for i, p in enumerate(params):
        v = p.get("vm_volume") or {}
        size = int(v.get("size") or 0)
        if size <= 0 or size % 512:
            raise bad("InvalidVolumeSize", f"volume size {size} is not a positive multiple of 512")
        policy = v.get("elf_storage_policy") or THIN
        vol = {"id": new_id(), "name": v.get("name") or f"{vm['name']}-{first_boot + i}", "size": size,
               "elf_storage_policy": policy, "cluster": vm["cluster"], "vm": {"id": vm["id"]}, "mounting": True,
               "local_created_at": now()}
        disk = {"id": new_id(), "boot": int(p.get("boot", first_boot + i)), "bus": p.get("bus", "VIRTIO"),
                "type": "DISK", "vm_volume": {"id": vol["id"], "name": vol["name"]}}
        out.append((disk, vol))
    return out


def _create_volumes(sim: Sim, vm_id: str, pairs: list[tuple[Row, Row]]) -> None:
    for _, vol in pairs:
        sim.storage.create_volume(vm_id, vol["id"], vol["size"], vol["elf_storage_policy"] != THICK)
        sim.store.put("vm_volumes", vol)


def create_vm(sim: Sim, body: Any) -> Result:
    out = []
    for p in body if isinstance(body, list) else [body]:
        disks = (p.get("vm_disks") or {}).get("mount_new_create_disks") or []
        out.append(_new_vm(sim, p, disks, "create-vm", lambda vm_id, pairs: _create_volumes(sim, vm_id, pairs)))
    return out


def rebuild_vm_from_snapshot(sim: Sim, body: Any) -> Result:
    """A new VM from a VM snapshot (VmRebuildParams): the snapshot's volumes, copied, with
    the name, description and NICs asked for (the rest as the snapshot had it)."""
    out = []
    for p in body if isinstance(body, list) else [body]:
        snap = next((s for s in sim.store.rows("vm_snapshots") if s["id"] == p.get("rebuild_from_snapshot_id")), None)
        if snap is None or snap.get("entityAsyncStatus"):
            raise bad("NotFound", f"no VM snapshot {p.get('rebuild_from_snapshot_id')!r} to rebuild from")
        src_vm = snap["vm"]["id"]
        snap_disks = sorted(snap["vm_disks"], key=lambda d: d["boot"])
        disks = [{"boot": d["boot"], "bus": d["bus"], "vm_volume": {
            "name": d["name"], "size": d["size"], "elf_storage_policy": d["elf_storage_policy"]}} for d in snap_disks]
        sources = [d["vm_volume_id"] for d in snap_disks]
        params = {k: snap[k] for k in ("vcpu", "memory", "firmware", "ha", "guest_os_type")}
        params.update(cpu_cores=snap["cpu"]["cores"], cpu_sockets=snap["cpu"]["sockets"], cluster_id=snap["cluster"]["id"])
        params.update({k: v for k, v in p.items() if v is not None})

        def fill(vm_id: str, pairs: list[tuple[Row, Row]], snap_id: str = snap["id"], src_vm: str = src_vm,
                 sources: list[str] = sources) -> None:
            for (_, vol), source in zip(pairs, sources):
                sim.storage.clone_volume(src_vm, snap_id, source, vm_id, vol["id"], vol["elf_storage_policy"] != THICK)
                sim.store.put("vm_volumes", vol)

        # the snapshot is held (not the VM: its replication and drills go on) so it is not deleted mid-copy
        out.append(_new_vm(sim, params, disks, "rebuild-vm-from-snapshot", fill, also_holds=[snap["id"]]))
    return out


def _new_vm(sim: Sim, p: Body, disk_params: list[Body], op: str, fill: Any,
            also_holds: Sequence[str] = ()) -> Row:
    """A VM row stored now (CREATING), its volumes made by `fill(vm_id, pairs)` in a task
    that also holds `also_holds`."""
    with sim.store.lock:
        sim.engine.check_free(*also_holds)
        c = sim.cluster(p.get("cluster_id"))
        name = p.get("name")
        if not isinstance(name, str) or not name:
            raise bad("InvalidName", "a VM needs a name")
        sim.name_taken(c["id"], name)
        vm: Row = {"id": new_id(), "name": name, "description": p.get("description", ""),
                   "cluster": {"id": c["id"], "name": c["name"]}, "host": sim.host_of(c["id"]), "status": "STOPPED",
                   "vcpu": int(p.get("vcpu", 1)), "cpu": {"cores": int(p.get("cpu_cores", 1)),
                                                            "sockets": int(p.get("cpu_sockets", 1))},
                   "memory": int(p.get("memory", 1 << 30)), "firmware": p.get("firmware", "BIOS"),
                   "ha": bool(p.get("ha", False)), "guest_os_type": p.get("guest_os_type", "LINUX"),
                   "vm_tools_status": "NOT_INSTALLED", "in_recycle_bin": False, "entityAsyncStatus": "CREATING",
                   "local_created_at": now(), "vm_nics": [], "vm_disks": []}
        vm["vm_nics"] = [_nic(sim, n, c["id"]) for n in p.get("vm_nics") or []]
        pairs = _new_disks(sim, vm, disk_params, 0)
        vm["vm_disks"] = [d for d, _ in pairs]
        sim.store.put("vms", vm)
        vm_id = vm["id"]

        def work(vm_id: str = vm_id, pairs: list[tuple[Row, Row]] = pairs) -> None:
            fill(vm_id, pairs)
            sim.update("vms", vm_id, entityAsyncStatus=None)

        def undo(vm_id: str = vm_id) -> None:
            sim.storage.delete_vm(vm_id)
            sim.drop_vm(vm_id)

        task = sim.engine.submit(op, [vm_id, *also_holds], c["id"], work, undo)
        return {"task_id": task["id"], "data": public(vm)}


def delete_vm(sim: Sim, body: Body) -> Result:
    out = []
    with sim.store.lock:
        for vm in _targets(sim, body):
            sim.engine.check_free(vm["id"])
            sim.stopped(vm, "delete it")
            sim.update("vms", vm["id"], entityAsyncStatus="DELETING")

            def work(vm_id: str = vm["id"]) -> None:
                sim.storage.delete_vm(vm_id)
                sim.drop_vm(vm_id)

            task = sim.engine.submit("delete-vm", [vm["id"]], vm["cluster"]["id"], work)
            out.append({"task_id": task["id"], "data": {"id": vm["id"]}})
    return out


def _each(sim: Sim, body: Body, op: str, check: Any, apply: Any) -> Result:
    """A change of each VM `where` names: check(vm) when asked, apply(vm_id) in its task."""
    out = []
    with sim.store.lock:
        for vm in _targets(sim, body):
            sim.engine.check_free(vm["id"])
            check(vm)
            def work(vm_id: str = vm["id"]) -> None:
                apply(vm_id)

            task = sim.engine.submit(op, [vm["id"]], vm["cluster"]["id"], work)
            out.append({"task_id": task["id"], "data": public(vm)})
    return out


UPDATABLE = ("name", "description", "vcpu", "memory", "cpu_cores", "cpu_sockets", "ha", "firmware", "guest_os_type")


def update_vm(sim: Sim, body: Body) -> Result:
    data = {k: v for k, v in (body.get("data") or {}).items() if k in UPDATABLE}

    def check(vm: Row) -> None:
        if "name" in data:
            sim.name_taken(vm["cluster"]["id"], data["name"], but=vm["id"])

    def apply(vm_id: str) -> None:
        fields = {k: v for k, v in data.items() if k not in ("cpu_cores", "cpu_sockets")}
        cpu = dict(sim.vm(vm_id)["cpu"])
        cpu.update({k[4:]: int(v) for k, v in data.items() if k in ("cpu_cores", "cpu_sockets")})
        sim.update("vms", vm_id, cpu=cpu, **fields)

    return _each(sim, body, "update-vm", check, apply)


def _tools(vm: Row, running: bool) -> str:
    if not vm.get("_sim_guest_tools"):
        return "NOT_INSTALLED"
    return "RUNNING" if running else "NOT_RUNNING"


def start_vm(sim: Sim, body: Body) -> Result:
    def apply(vm_id: str) -> None:
        sim.update("vms", vm_id, status="RUNNING", vm_tools_status=_tools(sim.vm(vm_id), True))

    return _each(sim, body, "start-vm", lambda vm: None, apply)


def poweroff_vm(sim: Sim, body: Body) -> Result:
    def apply(vm_id: str) -> None:
        sim.update("vms", vm_id, status="STOPPED", vm_tools_status=_tools(sim.vm(vm_id), False))

    return _each(sim, body, "poweroff-vm", lambda vm: None, apply)


def shutdown_vm(sim: Sim, body: Body) -> Result:
    def apply(vm_id: str) -> None:
        vm = sim.vm(vm_id)
        if vm["status"] == "RUNNING" and vm.get("_sim_refuse_shutdown"):
            raise bad("VmShutdownTimeout", f"the guest of VM {vm['name']!r} ({vm_id}) did not shut down; "
                      "it is still RUNNING (power it off to force)")
        sim.update("vms", vm_id, status="STOPPED", vm_tools_status=_tools(vm, False))

    return _each(sim, body, "shutdown-vm", lambda vm: None, apply)


def add_vm_disk(sim: Sim, body: Body) -> Result:
    params = ((body.get("data") or {}).get("vm_disks") or {}).get("mount_new_create_disks") or []
    planned: dict[str, list[tuple[Row, Row]]] = {}

    def check(vm: Row) -> None:
        planned[vm["id"]] = _new_disks(sim, vm, params, 1 + max((d["boot"] for d in vm["vm_disks"]), default=-1))

    def apply(vm_id: str) -> None:
        pairs = planned[vm_id]
        _create_volumes(sim, vm_id, pairs)
        sim.update("vms", vm_id, vm_disks=sim.vm(vm_id)["vm_disks"] + [d for d, _ in pairs])

    return _each(sim, body, "add-vm-disk", check, apply)


def remove_vm_disk(sim: Sim, body: Body) -> Result:
    ids = set((body.get("data") or {}).get("disk_ids") or [])

    def check(vm: Row) -> None:
        if not ids <= {d["id"] for d in vm["vm_disks"]}:
            raise bad("NotFound", f"VM {vm['id']} has no disk among {sorted(ids)}")

    def apply(vm_id: str) -> None:
        vm = sim.vm(vm_id)
        for d in vm["vm_disks"]:
            if d["id"] in ids:
                sim.storage.remove_volume(vm_id, d["vm_volume"]["id"])
                sim.store.delete("vm_volumes", d["vm_volume"]["id"])
        sim.update("vms", vm_id, vm_disks=[d for d in vm["vm_disks"] if d["id"] not in ids])

    return _each(sim, body, "remove-vm-disk", check, apply)


def target_volumes(sim: Sim, body: Body) -> list[Row]:
    """The volumes a change's `where` names (NotFound if none); call with store.lock held."""
    vols = select(sim.store.rows("vm_volumes"), {"where": body.get("where") or {}})
    if not vols:
        raise bad("NotFound", f"no volume matches {body.get('where')}")
    return vols


def update_vm_volume(sim: Sim, body: Body) -> Result:
    data = body.get("data") or {}
    out = []
    with sim.store.lock:
        for vol in target_volumes(sim, body):
            vm_id = vol["vm"]["id"]
            sim.engine.check_free(vm_id, vol["id"])
            size = int(data["size"]) if "size" in data else int(vol["size"])
            if size < vol["size"]:
                raise bad("VolumeShrinkUnsupported", f"volume {vol['name']!r} ({vol['id']}) cannot shrink "
                          f"({vol['size']} -> {size} bytes)")

            def apply(vol_id: str = vol["id"], vm_id: str = vm_id, size: int = size) -> None:
                sim.storage.resize_volume(vm_id, vol_id, size)
                sim.update("vm_volumes", vol_id, size=size)

            task = sim.engine.submit("update-vm-volume", [vm_id, vol["id"]], vol["cluster"]["id"], apply)
            out.append({"task_id": task["id"], "data": public(vol)})
    return out


def update_vm_nic(sim: Sim, body: Body) -> Result:
    data = body.get("data") or {}
    index = int(data["nic_index"]) if isinstance(data.get("nic_index"), int) else -1

    def check(vm: Row) -> None:
        if not 0 <= index < len(vm["vm_nics"]):
            raise bad("NotFound", f"VM {vm['id']} has no NIC number {index}")
        if "connect_vlan_id" in data:
            sim.vlan(data["connect_vlan_id"], vm["cluster"]["id"])

    def apply(vm_id: str) -> None:
        vm = sim.vm(vm_id)
        nics = [dict(n) for n in vm["vm_nics"]]
        n = nics[index]
        if "connect_vlan_id" in data:
            vlan = sim.vlan(data["connect_vlan_id"], vm["cluster"]["id"])
            n["vlan"] = {"id": vlan["id"], "name": vlan["name"]}
        for k in ("mac_address", "ip_address", "local_id", "enabled", "model"):
            if k in data:
                n[k] = data[k]
        sim.update("vms", vm_id, vm_nics=nics)

    return _each(sim, body, "update-vm-nic", check, apply)


def add_vm_nic(sim: Sim, body: Body) -> Result:
    params = (body.get("data") or {}).get("vm_nics") or []
    planned: dict[str, list[Row]] = {}

    def check(vm: Row) -> None:
        planned[vm["id"]] = [_nic(sim, p, vm["cluster"]["id"]) for p in params]

    def apply(vm_id: str) -> None:
        sim.update("vms", vm_id, vm_nics=sim.vm(vm_id)["vm_nics"] + planned[vm_id])

    return _each(sim, body, "add-vm-nic", check, apply)


def remove_vm_nic(sim: Sim, body: Body) -> Result:
    gone = set((body.get("data") or {}).get("nic_index") or [])

    def apply(vm_id: str) -> None:
        nics = sim.vm(vm_id)["vm_nics"]
        sim.update("vms", vm_id, vm_nics=[n for i, n in enumerate(nics) if i not in gone])

    return _each(sim, body, "remove-vm-nic", lambda vm: None, apply)
