"""The AOC cluster driver: one AOC cluster (endpoint `https://HOST#CLUSTER_ID`) through the
AOC REST API (drivers/aoc/client.py) for inventory, lifecycle, power, snapshots and
rollback, and through the storage data plane (`/v2/storage/...`, docs/driver-contract.md)
for changed extents and block reads and writes over NBD. Stateless: every call reads what
it needs from the AOC."""

from __future__ import annotations

import threading
import time
from typing import Any

from drivers.aoc import convert, endpoint
from drivers.aoc.client import AocClient
from drivers.aoc.disk import AocDiskHandle
from drivers.aoc.export import AocExportHandle, no_writes
from drivers.base import (
    DriverError,
    GuestToolsMissing,
    InvalidState,
    NotFound,
    OneShotIO,
    Unsupported,
    check_config,
    validate_name,
)
from models.inventory import VM, Consistency, Extent, GuestSigns, PowerState, SnapshotInfo, VMConfig

BLOCK_SIZE = 64 * 1024
PROBE_S = 300.0  # how long the answer of the storage-access probe holds (a deployment may add it)
STATUS = {s.value: s for s in PowerState}


class AocDriver(OneShotIO):
    block_size = BLOCK_SIZE

    def __init__(self, ep: str, cluster: str) -> None:
        self.cluster = cluster
        self.base_url, self.cluster_id = endpoint.parse(ep, cluster)
        self.c = AocClient(self.base_url, endpoint.credentials(self.base_url, cluster),
                           endpoint.verify(self.base_url, cluster), trusted=endpoint.trusted(self.base_url, cluster))
        self._snap_volumes: dict[tuple[str, str], dict[str, str]] = {}  # a snapshot's disks never change
        self._probe: tuple[float, str | None] | None = None  # (when, why there is no storage access)
        self._probe_lock = threading.Lock()

    def full_read_reason(self) -> str | None:
        """None if the AOC exposes the storage access; else why every read is a whole volume
        through `export-vm-volume` (a 404 of `get-storage-info`: the deployment has no
        /v2/storage). Other failures are raised, never taken for an absence."""
        with self._probe_lock:
            if self._probe is None or time.monotonic() - self._probe[0] > PROBE_S:
                try:
                    self.c.storage("get-storage-info", {})
                    why = None
                except NotFound:
                    why = (f"AOC {self.base_url} exposes no storage access (POST /v2/storage/get-storage-info "
                           "answered 404): no changed-block tracking, so every backup reads whole volumes "
                           "through export-vm-volume")
                self._probe = (time.monotonic(), why)
            return self._probe[1]

    # ------------------------------------------------------------------ reading
    def _in_cluster(self, **where: Any) -> dict[str, Any]:
        return {**where, "cluster": {"id": self.cluster_id}}

    def _vm_rows(self, **where: Any) -> list[dict[str, Any]]:
        rows = self.c.read("get-vms", self._in_cluster(**where))
        return [r for r in rows if r.get("entityAsyncStatus") != "CREATING"]

    def _to_vms(self, rows: list[dict[str, Any]]) -> list[VM]:
        ids = [d["vm_volume"]["id"] for r in rows for d in r["vm_disks"]]
        vols = {v["id"]: v for v in self.c.read("get-vm-volumes", {"id_in": ids})} if ids else {}
        out = []
        for r in rows:
            disks = [(d["boot"], d["vm_volume"]["name"], vols[d["vm_volume"]["id"]]["size"],
                      vols[d["vm_volume"]["id"]]["elf_storage_policy"]) for d in r["vm_disks"]]
            out.append(VM(id=r["id"], cluster=self.cluster, config=convert.config(r, disks),
                          power_state=STATUS.get(r["status"], PowerState.UNKNOWN)))
        return out

    def _row(self, vm_id: object) -> dict[str, Any]:
        rows = self._vm_rows(id=vm_id) if isinstance(vm_id, str) else []
        if not rows:
            raise NotFound(f"no VM with id {vm_id!r} in AOC cluster {self.cluster_id} ({self.cluster!r})")
        return rows[0]

    def list_vms(self) -> list[VM]:
        return sorted(self._to_vms(self._vm_rows()), key=lambda v: v.name)

    def get_vm(self, vm_id: str) -> VM:
        return self._to_vms([self._row(vm_id)])[0]

    def find_vm(self, name: str) -> VM | None:
        validate_name(name, "VM name")
        rows = self._vm_rows(name=name)
        return self._to_vms(rows)[0] if rows else None

    # ------------------------------------------------------------------ lifecycle
    def _vlans(self, names: set[str]) -> dict[str, str]:
        rows = self.c.read("get-vlans", {"name_in": sorted(names), "vds": {"cluster": {"id": self.cluster_id}}})
        found = {r["name"]: r["id"] for r in rows}
        for n in sorted(names - set(found)):
            raise NotFound(f"network {n!r} is not a VLAN of AOC cluster {self.cluster_id} ({self.cluster!r})")
        return found

    def _nic(self, n: Any, vlans: dict[str, str]) -> dict[str, Any]:
        return {"connect_vlan_id": vlans[n.network], "mac_address": n.mac, "local_id": n.name,
                "ip_address": n.ip, "enabled": True, "model": "VIRTIO"}

    def create_vm(self, config: VMConfig) -> VM:
        config = check_config(config)
        vlans = self._vlans({n.network for n in config.nics}) if config.nics else {}
        data = self.c.change("create-vm", [{
            "cluster_id": self.cluster_id, "name": config.name, "vcpu": config.vcpu, "cpu_cores": config.vcpu,
            "cpu_sockets": 1, "memory": config.memory_mib * convert.MIB, "description": convert.description(config),
            "status": "STOPPED", "firmware": "BIOS", "ha": False, "guest_os_type": "LINUX",
            "vm_disks": {"mount_new_create_disks": [convert.new_disk(d, i) for i, d in enumerate(config.disks)]},
            "vm_nics": [self._nic(n, vlans) for n in config.nics]}])
        return self.get_vm(data[0]["id"])

    def clone_from_snapshot(self, vm_id: str, snap_id: str, config: VMConfig) -> VM:
        config = check_config(config)
        snap = self.get_snapshot(vm_id, snap_id)
        if [(d.name, d.size_bytes) for d in config.disks] != [(d.name, d.size_bytes) for d in snap.config.disks]:
            raise Unsupported(f"a VM rebuilt from snapshot {snap_id} has the snapshot's disks "
                                 f"{[d.name for d in snap.config.disks]}, not {[d.name for d in config.disks]}")
        vlans = self._vlans({n.network for n in config.nics}) if config.nics else {}
        data = self.c.change("rebuild-vm-from-snapshot", [{
            "rebuild_from_snapshot_id": snap_id, "cluster_id": self.cluster_id, "name": config.name,
            "vcpu": config.vcpu, "cpu_cores": config.vcpu, "cpu_sockets": 1, "memory": config.memory_mib * convert.MIB,
            "description": convert.description(config), "status": "STOPPED",
            "vm_nics": [self._nic(n, vlans) for n in config.nics]}])
        return self.get_vm(data[0]["id"])

    def delete_vm(self, vm_id: str) -> None:
        vm = self.get_vm(vm_id)
        if vm.power_state != PowerState.STOPPED:
            raise InvalidState(f"VM {vm.name!r} ({vm_id}) is {vm.power_state.value}; stop it before deleting it")
        self.c.change("delete-vm", {"where": {"id": vm_id}})

    def update_vm_config(self, vm_id: str, config: VMConfig) -> VM:
        config = check_config(config)
        row = self._row(vm_id)
        cur = self._to_vms([row])[0].config
        have = {d.name: d for d in cur.disks}
        for d in config.disks:
            if d.name in have and d.size_bytes < have[d.name].size_bytes:
                raise Unsupported(f"disk {d.name} of VM {cur.name!r} cannot shrink "
                                  f"({have[d.name].size_bytes} -> {d.size_bytes} bytes)")
            if d.name in have and d.thin != have[d.name].thin:
                raise Unsupported(f"disk {d.name} of VM {cur.name!r}: the AOC driver cannot change a volume "
                                  "between thin and thick")
        kept = [d.name for d in config.disks if d.name in have]
        if kept != [d.name for d in cur.disks if d.name in set(kept)]:
            raise Unsupported(f"VM {cur.name!r}: the AOC driver cannot reorder existing disks ({kept})")
        where = {"where": {"id": vm_id}}
        self.c.change("update-vm", {**where, "data": {
            "name": config.name, "vcpu": config.vcpu, "cpu_cores": config.vcpu,
            "memory": config.memory_mib * convert.MIB, "description": convert.description(config)}})
        self._reshape_disks(vm_id, row, cur, config)
        self._reshape_nics(vm_id, row, config)
        return self.get_vm(vm_id)

    def _reshape_disks(self, vm_id: str, row: dict[str, Any], cur: VMConfig, want: VMConfig) -> None:
        vol_of = {d["vm_volume"]["name"]: d for d in row["vm_disks"]}
        have = {d.name: d for d in cur.disks}
        wanted = {d.name for d in want.disks}
        gone = [vol_of[n]["id"] for n in have if n not in wanted]
        if gone:
            self.c.change("remove-vm-disk", {"where": {"id": vm_id}, "data": {"disk_ids": gone}})
        for d in want.disks:
            if d.name in have and d.size_bytes > have[d.name].size_bytes:
                self.c.change("update-vm-volume", {"where": {"id": vol_of[d.name]["vm_volume"]["id"]},
                                                   "data": {"size": d.size_bytes}})
        new = [d for d in want.disks if d.name not in have]
        if new:
            first = 1 + max((d["boot"] for d in row["vm_disks"]), default=-1)
            self.c.change("add-vm-disk", {"where": {"id": vm_id}, "data": {"vm_disks": {
                "mount_new_create_disks": [convert.new_disk(d, first + i) for i, d in enumerate(new)]}}})

    def _reshape_nics(self, vm_id: str, row: dict[str, Any], want: VMConfig) -> None:
        nics = row["vm_nics"]
        wanted = {n.name: n for n in want.nics}
        vlans = self._vlans({n.network for n in want.nics}) if want.nics else {}
        gone = [i for i, n in enumerate(nics) if n["local_id"] not in wanted]
        if gone:
            self.c.change("remove-vm-nic", {"where": {"id": vm_id}, "data": {"nic_index": gone}})
        kept = [n for n in nics if n["local_id"] in wanted]
        for i, n in enumerate(kept):
            w = wanted[n["local_id"]]
            if (n["vlan"]["name"], n["mac_address"], n.get("ip_address")) != (w.network, w.mac, w.ip):
                self.c.change("update-vm-nic", {"where": {"id": vm_id}, "data": {
                    "nic_index": i, "connect_vlan_id": vlans[w.network], "mac_address": w.mac, "ip_address": w.ip}})
        have = {n["local_id"] for n in kept}
        new = [self._nic(n, vlans) for n in want.nics if n.name not in have]
        if new:
            self.c.change("add-vm-nic", {"where": {"id": vm_id}, "data": {"vm_nics": new}})

    # ------------------------------------------------------------------ power and network
    def _power(self, vm_id: str, op: str, unless: PowerState, timeout_s: float | None = None) -> VM:
        vm = self.get_vm(vm_id)
        if vm.power_state != unless:
            if timeout_s is None:
                self.c.change(op, {"where": {"id": vm_id}})
            else:
                self.c.change(op, {"where": {"id": vm_id}}, timeout_s=timeout_s)
            vm = self.get_vm(vm_id)
        return vm

    def power_on(self, vm_id: str) -> VM:
        return self._power(vm_id, "start-vm", PowerState.RUNNING)

    def power_off(self, vm_id: str) -> VM:
        return self._power(vm_id, "poweroff-vm", PowerState.STOPPED)

    def shutdown(self, vm_id: str, timeout_s: float) -> VM:
        return self._power(vm_id, "shutdown-vm", PowerState.STOPPED, timeout_s)

    def attach_network(self, vm_id: str, nic_name: str, network: str) -> VM:
        validate_name(nic_name, "NIC name")
        validate_name(network, "network")
        row = self._row(vm_id)
        index = next((i for i, n in enumerate(row["vm_nics"]) if n["local_id"] == nic_name), None)
        if index is None:
            raise NotFound(f"VM {row['name']!r} ({vm_id}) has no NIC {nic_name!r}")
        vlan = self._vlans({network})[network]
        self.c.change("update-vm-nic", {"where": {"id": vm_id}, "data": {"nic_index": index, "connect_vlan_id": vlan}})
        return self.get_vm(vm_id)

    def guest_signs(self, vm_id: str) -> GuestSigns:
        """The AOC shows no console; it does show whether VMTools answer."""
        tools = self._row(vm_id).get("vm_tools_status")
        return GuestSigns(console_tail=None, agent=None if tools in (None, "NOT_INSTALLED") else tools == "RUNNING")

    # ------------------------------------------------------------------ snapshots
    def _snap_rows(self, vm_id: str, **where: Any) -> list[dict[str, Any]]:
        rows = self.c.read("get-vm-snapshots", {**where, "vm": {"id": vm_id}}, order_by="local_created_at_ASC")
        return [r for r in rows if not r.get("entityAsyncStatus")]

    def _snap_row(self, vm_id: str, snap_id: object) -> dict[str, Any]:
        rows = self._snap_rows(vm_id, id=snap_id) if isinstance(snap_id, str) else []
        if not rows:
            raise NotFound(f"VM {vm_id} has no snapshot {snap_id!r}")
        return rows[0]

    @staticmethod
    def _snap_info(r: dict[str, Any]) -> SnapshotInfo:
        disks = [(d["boot"], d["name"], d["size"], d["elf_storage_policy"]) for d in r["vm_disks"]]
        return SnapshotInfo(id=r["id"], vm_id=r["vm"]["id"], name=r["name"], created_at=r["local_created_at"],
                            consistency=Consistency(r["consistent_type"]), config=convert.config(r, disks))

    def create_snapshot(self, vm_id: str, name: str,
                        consistency: Consistency = Consistency.CRASH_CONSISTENT) -> SnapshotInfo:
        validate_name(name, "snapshot name")
        consistency = Consistency(consistency)
        vm = self.get_vm(vm_id)
        if consistency == Consistency.FILE_SYSTEM_CONSISTENT and not vm.config.guest_tools:
            raise GuestToolsMissing(f"VM {vm.name!r} ({vm_id}) has no guest tools (VMTools), so a "
                                    "FILE_SYSTEM_CONSISTENT snapshot is impossible; take a CRASH_CONSISTENT one")
        data = self.c.change("create-vm-snapshot", {"data": [{"vm_id": vm_id, "name": name,
                                                              "consistent_type": consistency.value}]})
        return self._snap_info(self._snap_row(vm_id, data[0]["id"]))

    def list_snapshots(self, vm_id: str) -> list[SnapshotInfo]:
        self._row(vm_id)
        return [self._snap_info(r) for r in self._snap_rows(vm_id)]

    def get_snapshot(self, vm_id: str, snap_id: str) -> SnapshotInfo:
        return self._snap_info(self._snap_row(vm_id, snap_id))

    def delete_snapshot(self, vm_id: str, snap_id: str) -> None:
        self._snap_row(vm_id, snap_id)
        self.c.change("delete-vm-snapshot", {"where": {"id": snap_id}})

    def rollback(self, vm_id: str, snap_id: str) -> VM:
        vm = self.get_vm(vm_id)
        self._snap_row(vm_id, snap_id)
        if vm.power_state != PowerState.STOPPED:
            raise InvalidState(f"VM {vm.name!r} ({vm_id}) is {vm.power_state.value}; stop it before rolling it back")
        self.c.change("rollback-vm", {"where": {"id": vm_id}, "data": {"snapshot_id": snap_id}})
        return self.get_vm(vm_id)

    # ------------------------------------------------------------------ extents and data
    def _volume(self, vm_id: str, disk: str, snap_id: str | None) -> str:
        validate_name(disk, "disk name")
        if snap_id is None:
            vols = {d["vm_volume"]["name"]: d["vm_volume"]["id"] for d in self._row(vm_id)["vm_disks"]}
        elif (vm_id, snap_id) in self._snap_volumes:
            vols = self._snap_volumes[(vm_id, snap_id)]
        else:
            vols = {d["name"]: d["vm_volume_id"] for d in self._snap_row(vm_id, snap_id)["vm_disks"]}
            if len(self._snap_volumes) > 4096:
                self._snap_volumes.clear()
            self._snap_volumes[(vm_id, snap_id)] = vols
        if disk not in vols:
            raise NotFound(f"VM {vm_id} has no disk {disk!r}" + (f" in snapshot {snap_id}" if snap_id else ""))
        return vols[disk]

    def _extents(self, body: dict[str, Any]) -> list[Extent]:
        r = self.c.storage("get-volume-extents", body)
        if r["block_size"] != self.block_size:
            raise DriverError(f"AOC storage tracks changes in {r['block_size']}-byte blocks; abdr expects "
                              f"{self.block_size}")
        return [Extent(**e) for e in r["extents"]]

    def _whole(self, vm_id: str, disk: str, snap_id: str | None) -> list[Extent]:
        """The whole disk as one extent: what may hold data, or may have changed, when the
        storage tracks nothing (a superset, as the contract allows)."""
        self._volume(vm_id, disk, snap_id)
        cfg = self.get_snapshot(vm_id, snap_id).config if snap_id else self.get_vm(vm_id).config
        size = next(d.size_bytes for d in cfg.disks if d.name == disk)
        return [Extent(offset=0, length=size)] if size else []

    def allocated_extents(self, vm_id: str, disk: str, snap_id: str | None = None) -> list[Extent]:
        if self.full_read_reason():
            return self._whole(vm_id, disk, snap_id)
        return self._extents({"vm_id": vm_id, "volume_id": self._volume(vm_id, disk, snap_id), "snapshot_id": snap_id})

    def changed_extents(self, vm_id: str, disk: str, base_snap_id: str, snap_id: str | None = None) -> list[Extent]:
        base_vol = self._volume(vm_id, disk, base_snap_id)
        vol = self._volume(vm_id, disk, snap_id)
        if vol != base_vol:
            raise NotFound(f"disk {disk!r} of VM {vm_id} is another volume than in snapshot {base_snap_id} "
                           "(removed and added again): no changed extents between them")
        if self.full_read_reason():
            return self._whole(vm_id, disk, snap_id)
        return self._extents({"vm_id": vm_id, "volume_id": vol, "snapshot_id": snap_id,
                              "base_snapshot_id": base_snap_id})

    def open_disk(self, vm_id: str, disk: str, snap_id: str | None = None,
                  writable: bool = False) -> AocDiskHandle | AocExportHandle:
        if writable and snap_id is not None:
            raise InvalidState("snapshot views are read-only")
        volume = self._volume(vm_id, disk, snap_id)
        if self.full_read_reason():
            if writable:
                raise no_writes(self.base_url)
            return AocExportHandle(self.c, volume, snap_id)
        return AocDiskHandle(self.c, vm_id, volume, snap_id, writable)


def check_endpoint(ep: str, cluster: str) -> None:
    base, _ = endpoint.parse(ep, cluster)
    endpoint.credentials(base, cluster)


def probe_endpoint(ep: str, cluster: str) -> tuple[str, dict[str, str]]:
    """Log in and find the cluster: what `abdr status` says of an AOC cluster."""
    base, cluster_id = endpoint.parse(ep, cluster)
    c = AocClient(base, endpoint.credentials(base, cluster), endpoint.verify(base, cluster), retry_s=5.0,
                  trusted=endpoint.trusted(base, cluster))
    rows = c.read("get-clusters", {"id": cluster_id})
    if not rows:
        raise NotFound(f"AOC {base} has no cluster {cluster_id} (for abdr cluster {cluster!r})")
    return f"AOC {base}, cluster {rows[0]['name']} ({cluster_id})", {"cluster": str(rows[0].get("version", ""))}


__all__ = ["AocDriver"]
