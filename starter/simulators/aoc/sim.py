"""The simulator's state and the parts every operation shares: the store, the task engine,
the storage, faults, logins, and the lookups of VMs and clusters."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starter.simulators.aoc.errors import SimError, bad, not_found
from starter.simulators.aoc.faults import Faults
from starter.simulators.aoc.storage import Storage
from starter.simulators.aoc.store import Row, Store, new_id, now
from starter.simulators.aoc.tasks import Engine


@dataclass(frozen=True)
class SimConfig:
    state: Path
    username: str = "root"
    password: str = "root"
    source: str = "LOCAL"
    token_ttl_s: float = 3600.0
    pending_s: float = 0.05
    executing_s: float = 0.1
    lease_ttl_s: float = 30.0
    vlans: tuple[str, ...] = ("vlan-prod", "vlan-dr", "vlan-test")
    storage_access: bool = True  # False: no /v2/storage (an AOC that exposes only the public API)


class Sim:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        cfg.state.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.state)
        self.faults = Faults()
        self.engine = Engine(self.store, self.faults, cfg.pending_s, cfg.executing_s)
        self.storage = Storage(cfg.state, cfg.lease_ttl_s)
        self.tokens: dict[str, float] = {}
        self._tok_lock = threading.Lock()
        if not self.store.rows("clusters"):
            self.add_cluster("cluster-1", list(cfg.vlans))
        hosted = {h["cluster"]["id"] for h in self.store.rows("hosts")}
        for c in self.store.rows("clusters"):
            if c["id"] not in hosted:  # state written before hosts were modelled
                self._add_host(c)

    # ------------------------------------------------------------------ logins
    def login(self, body: dict[str, Any]) -> dict[str, Any]:
        if (body.get("username"), body.get("password"), body.get("source", "LOCAL")) != \
                (self.cfg.username, self.cfg.password, self.cfg.source):
            raise SimError(400, "LoginFailed", "username, password or source is wrong")
        token = secrets.token_hex(24)
        with self._tok_lock:
            self.tokens[token] = time.monotonic() + self.cfg.token_ttl_s
        return {"data": {"token": token}}

    def check_token(self, token: str | None) -> None:
        with self._tok_lock:
            expiry = self.tokens.get(token or "")
        if expiry is None:
            raise SimError(401, "Unauthorized", "no valid token in the Authorization header")
        if expiry < time.monotonic():
            raise SimError(401, "TokenExpired", "the token expired; log in again")

    def expire_tokens(self) -> None:
        with self._tok_lock:
            self.tokens = {t: 0.0 for t in self.tokens}

    # ------------------------------------------------------------------ clusters
    def add_cluster(self, name: str, vlans: list[str]) -> Row:
        with self.store.lock:
            c = self.store.put("clusters", {"id": new_id(), "name": name, "type": "SMTX_OS", "version": "simulator",
                                            "local_created_at": now()})
            self._add_host(c)
            vds = {"id": new_id(), "name": f"{name}-vds", "cluster": {"id": c["id"], "name": name}}
            for v in vlans:
                self.store.put("vlans", {"id": new_id(), "name": v, "vlan_id": 0, "type": "VM", "vds": vds})
            return c

    def _add_host(self, c: Row) -> None:
        """One host per cluster: abdr places nothing, but a VM row names the host it is on."""
        self.store.put("hosts", {"id": new_id(), "name": f"{c['name']}-host-1",
                                 "cluster": {"id": c["id"], "name": c["name"]}, "status": "CONNECTED_HEALTHY",
                                 "management_ip": "127.0.0.1", "local_created_at": now()})

    def remove_cluster(self, cluster_id: str) -> None:
        for vm in [v for v in self.store.rows("vms") if v["cluster"]["id"] == cluster_id]:
            self.storage.delete_vm(vm["id"])
            self.drop_vm(vm["id"])
        for v in [v for v in self.store.rows("vlans") if v["vds"]["cluster"]["id"] == cluster_id]:
            self.store.delete("vlans", v["id"])
        for h in [h for h in self.store.rows("hosts") if h["cluster"]["id"] == cluster_id]:
            self.store.delete("hosts", h["id"])
        self.store.delete("clusters", cluster_id)

    def drop_vm(self, vm_id: str) -> None:
        with self.store.lock:
            for s in [s for s in self.store.rows("vm_snapshots") if s["vm"]["id"] == vm_id]:
                self.store.delete("vm_snapshots", s["id"])
            for vol in [v for v in self.store.rows("vm_volumes") if v.get("vm", {}).get("id") == vm_id]:
                self.store.delete("vm_volumes", vol["id"])
            self.store.delete("vms", vm_id)

    # ------------------------------------------------------------------ lookups
    def cluster(self, cluster_id: object) -> Row:
        c = self.store.get("clusters", cluster_id)
        if c is None:
            raise not_found(f"cluster {cluster_id}")
        return c

    def host_of(self, cluster_id: str) -> Row:
        """The host a new VM of the cluster runs on (its one host)."""
        h = next((h for h in self.store.rows("hosts") if h["cluster"]["id"] == cluster_id), None)
        if h is None:
            raise not_found(f"a host of cluster {cluster_id}")
        return {"id": h["id"], "name": h["name"]}

    def vm(self, vm_id: object) -> Row:
        vm = self.store.get("vms", vm_id)
        if vm is None:
            raise not_found(f"VM {vm_id}")
        return vm

    def vlan(self, vlan_id: object, cluster_id: str) -> Row:
        v = self.store.get("vlans", vlan_id)
        if v is None or v["vds"]["cluster"]["id"] != cluster_id:
            raise not_found(f"vlan {vlan_id} in cluster {cluster_id}")
        return v

    def name_taken(self, cluster_id: str, name: str, but: str | None = None) -> None:
        for v in self.store.rows("vms"):
            if v["cluster"]["id"] == cluster_id and v["name"] == name and v["id"] != but:
                raise bad("VmNameDuplicate", f"cluster {cluster_id} already has a VM named {name!r} ({v['id']})")

    def stopped(self, vm: Row, doing: str) -> None:
        if vm["status"] != "STOPPED":
            raise bad("VmNotStopped", f"VM {vm['name']!r} ({vm['id']}) is {vm['status']}; stop it to {doing}")

    def update(self, table: str, row_id: str, **fields: Any) -> Row:
        with self.store.lock:
            row = dict(self.store.get(table, row_id) or {})
            if not row:
                raise not_found(f"{table} {row_id}")
            row.update(fields)
            return self.store.put(table, row)


def public(row: Row) -> Row:
    """A row as the API shows it: without the simulator's own `_sim_*` keys."""
    return {k: v for k, v in row.items() if not k.startswith("_sim_")}
