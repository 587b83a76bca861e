"""abdr's VMConfig <-> the AOC's VM fields. Disks are the VM's volumes in boot order (the
volume name is the disk name; thin or thick by `elf_storage_policy`), NICs its `vm_nics`
(`local_id` is the NIC name, the VLAN's name its network), memory in bytes. What the AOC has
no field for (guest tools as abdr was told, boot flags, `platform`) is kept on a last line
of the description, `[abdr] {json}`, so a restore gives back the config it was given."""

from __future__ import annotations

import json
from typing import Any

from models.inventory import NIC, DiskSpec, VMConfig

TAG = "\n[abdr] "
THIN, THICK = "REPLICA_2_THIN_PROVISION", "REPLICA_2_THICK_PROVISION"
MIB = 1 << 20


def description(cfg: VMConfig) -> str:
    extras: dict[str, Any] = {}
    if cfg.guest_tools:
        extras["guest_tools"] = True
    boot = [d.name for d in cfg.disks if d.boot]
    if boot:
        extras["boot"] = boot
    if cfg.platform:
        extras["platform"] = cfg.platform
    return cfg.description + (TAG + json.dumps(extras, sort_keys=True) if extras else "")


def _split(desc: str) -> tuple[str, dict[str, Any]]:
    head, tag, tail = (desc or "").rpartition(TAG)
    if not tag:
        return desc or "", {}
    try:
        return head, dict(json.loads(tail))
    except ValueError:
        return desc, {}


def new_disk(d: DiskSpec, boot: int) -> dict[str, Any]:
    return {"boot": boot, "bus": "VIRTIO",
            "vm_volume": {"name": d.name, "size": d.size_bytes, "elf_storage_policy": THIN if d.thin else THICK}}


def config(row: dict[str, Any], disks: list[tuple[int, str, int, str]]) -> VMConfig:
    """A VM's (or a snapshot's) config from its row and its disks as (boot, name, size, policy)."""
    desc, extras = _split(row.get("description") or "")
    boot = set(extras.get("boot") or [])
    return VMConfig(
        name=row["name"] if "vm" not in row else row["vm"]["name"],
        vcpu=row["vcpu"], memory_mib=max(64, row["memory"] // MIB), description=desc,
        guest_tools=bool(extras.get("guest_tools")), platform=dict(extras.get("platform") or {}),
        disks=[DiskSpec(name=n, size_bytes=s, thin=p != THICK, boot=n in boot) for _, n, s, p in sorted(disks)],
        nics=[NIC(name=n["local_id"], network=n["vlan"]["name"], mac=n["mac_address"], ip=n.get("ip_address"))
              for n in row.get("vm_nics") or []])
