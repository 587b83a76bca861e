"""The test bed's shared pieces for tests that put abdr's libvirt driver on this host:
fresh cluster directories QEMU can reach, the isolated networks the tests' VMs name, and
the clean-up of a test's domains."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import libvirt

from tests.guest.domain import ROOT, URI


def fresh_cluster_dir(_tmp_path: Path | None = None) -> Path:
    """A new, empty directory under libvirt's image directory (QEMU runs as libvirt-qemu
    and must reach the disks: pytest's tmp_path, mode 0700, it cannot)."""
    d = ROOT / "clusters" / uuid.uuid4().hex[:12]
    d.mkdir(parents=True)
    for p in (ROOT, ROOT / "clusters", d):
        p.chmod(0o755)
    return d


def require_networks(*names: str) -> None:
    """Isolated libvirt networks (a bridge with no uplink, no addresses) under these names,
    defined and started if missing: a VM can only start on a network the host has."""
    conn = libvirt.open(URI)
    try:
        for name in names:
            try:
                net = conn.networkLookupByName(name)
            except libvirt.libvirtError:
                bridge = "abdr" + uuid.uuid5(uuid.NAMESPACE_DNS, name).hex[:8]
                net = conn.networkDefineXML(
                    f"<network><name>{name}</name><bridge name='{bridge}' stp='off'/></network>")
            if not net.isActive():
                net.create()
    finally:
        conn.close()


def remove_cluster_dir(endpoint: str) -> None:
    """Destroy and undefine every domain whose disks or abdr metadata are in the cluster
    directory of `endpoint`, then remove the directory."""
    _, _, path = endpoint.partition("#")
    if not path:
        return
    conn = libvirt.open(URI)
    try:
        for dom in conn.listAllDomains():
            try:
                xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                if path not in xml:
                    continue
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
            except libvirt.libvirtError:
                continue
    finally:
        conn.close()
    shutil.rmtree(path, ignore_errors=True)
