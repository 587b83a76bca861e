"""Domain XML <-> abdr's VMConfig. The domain XML is the truth for what a VM is (vcpu,
memory, disks, NICs, boot): an administrator's `virsh edit` shows in abdr. abdr's own
names live in the XML too: disks and NICs carry user aliases (`ua-<name>`), and an
`<abdr:vm>` metadata element names the cluster directory the domain belongs to, the VM's
abdr name and what only abdr knows of a disk (thin or thick)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from models.inventory import NIC, DiskSpec, VMConfig

NS = "https://abdr.dev/xmlns/libvirt/1"
ABDR = f"{{{NS}}}"
AGENT_CHANNEL = "org.qemu.guest_agent.0"
PLATFORM_KEYS = ("kernel", "initrd", "cmdline")  # direct kernel boot, carried by restores
ET.register_namespace("abdr", NS)


@dataclass
class DomainDisk:
    name: str  # abdr's disk name: the ua- alias, else the target dev
    target: str  # vda, vdb, ...
    source: Path | None  # the active file (None: not a file, e.g. a network disk)
    fmt: str  # qcow2, raw, ...
    thin: bool
    boot: bool


@dataclass
class Domain:
    """What abdr reads of one domain's (inactive, persistent) XML."""

    uuid: str
    dom_name: str
    cluster_path: str | None  # from <abdr:vm cluster=...>; None: a domain abdr did not create
    name: str  # the VM's abdr name (the domain name for foreign domains)
    vcpu: int
    memory_mib: int
    disks: list[DomainDisk]
    nics: list[NIC]
    guest_agent: bool
    description: str
    platform: dict[str, str]
    root: ET.Element

    def disk(self, name: str) -> DomainDisk | None:
        return next((d for d in self.disks if d.name == name), None)

    def config(self, sizes: dict[str, int]) -> VMConfig:
        return VMConfig(
            name=self.name, vcpu=self.vcpu, memory_mib=max(64, self.memory_mib),
            disks=[DiskSpec(name=d.name, size_bytes=sizes[d.name], boot=d.boot, thin=d.thin) for d in self.disks],
            nics=self.nics, guest_tools=self.guest_agent, description=self.description,
            platform=self.platform)


def _alias(el: ET.Element) -> str | None:
    a = el.find("alias")
    name = a.get("name", "") if a is not None else ""
    return name[3:] if name.startswith("ua-") else None


def _memory_mib(root: ET.Element) -> int:
    m = root.find("memory")
    if m is None or not (m.text or "").strip():
        return 64
    value = int((m.text or "0").strip())
    unit = m.get("unit", "KiB")
    factor = {"b": 1, "bytes": 1, "KiB": 1024, "k": 1024, "MiB": 1024**2, "M": 1024**2,
              "GiB": 1024**3, "G": 1024**3, "TiB": 1024**4, "T": 1024**4}.get(unit, 1024)
    return value * factor // 1024**2


def parse(xml: str) -> Domain:
    root = ET.fromstring(xml)
    meta = root.find(f"metadata/{ABDR}vm")
    marks = {d.get("name"): d for d in (meta.findall(f"{ABDR}disk") if meta is not None else [])}
    disks: list[DomainDisk] = []
    for i, el in enumerate(root.findall("devices/disk")):
        if el.get("device", "disk") != "disk":
            continue
        target = el.find("target")
        dev = target.get("dev", f"disk{i}") if target is not None else f"disk{i}"
        src = el.find("source")
        file = src.get("file") if src is not None and el.get("type", "file") == "file" else None
        drv = el.find("driver")
        name = _alias(el) or dev
        mark = marks.get(name)
        disks.append(DomainDisk(name=name, target=dev, source=Path(file) if file else None,
                                fmt=drv.get("type", "raw") if drv is not None else "raw",
                                thin=mark is None or mark.get("thin", "true") == "true",
                                boot=(mark.get("boot") == "true") if mark is not None else el.find("boot") is not None))
    if meta is None and disks and not any(d.boot for d in disks):
        disks[0].boot = True  # a foreign domain boots from its first disk unless it says otherwise
    nics = []
    for i, el in enumerate(root.findall("devices/interface")):
        mac, src = el.find("mac"), el.find("source")
        nics.append(NIC(name=_alias(el) or f"nic{i}", network=(src.get("network") or src.get("bridge") or "none") if src is not None else "none",
                        mac=mac.get("address", "52:54:00:00:00:00") if mac is not None else "52:54:00:00:00:00"))
    agent = any((c.find("target") is not None and c.find("target").get("name") == AGENT_CHANNEL)  # type: ignore[union-attr]
                for c in root.findall("devices/channel"))
    os_el = root.find("os")
    platform = {k: (os_el.findtext(k) or "") for k in PLATFORM_KEYS if os_el is not None and os_el.find(k) is not None}
    name = root.findtext("name") or ""
    return Domain(uuid=root.findtext("uuid") or "", dom_name=name,
                  cluster_path=meta.get("cluster") if meta is not None else None,
                  name=(meta.get("name") if meta is not None else None) or name,
                  vcpu=int(root.findtext("vcpu") or 1), memory_mib=_memory_mib(root), disks=disks, nics=nics,
                  guest_agent=agent, description=root.findtext("description") or "", platform=platform, root=root)


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


def _target(i: int) -> str:
    s, n = "", i
    while True:
        s = chr(ord("a") + n % 26) + s
        n = n // 26 - 1
        if n < 0:
            return "vd" + s


def build(*, virt_type: str, uuid: str, dom_name: str, cluster_path: str, config: VMConfig,
          sources: dict[str, Path], console: Path) -> str:
    """The persistent XML of a domain abdr creates (or rewrites after a config change or a
    rollback): virtio disks and NICs, ACPI, the serial console logged to a file (evidence a
    failover test can show), a guest-agent channel when the config says guest tools."""
    root = ET.Element("domain", type=virt_type)
    _sub(root, "name", dom_name)
    _sub(root, "uuid", uuid)
    _sub(root, "title", config.name)
    if config.description:
        _sub(root, "description", config.description)
    meta = ET.SubElement(_sub(root, "metadata"), f"{ABDR}vm", cluster=cluster_path, name=config.name)
    for d in config.disks:
        ET.SubElement(meta, f"{ABDR}disk", name=d.name, thin="true" if d.thin else "false",
                      boot="true" if d.boot else "false")
    _sub(root, "memory", str(config.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(config.vcpu))
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64")
    for k in PLATFORM_KEYS:
        if config.platform.get(k):
            _sub(os_el, k, config.platform[k])
    kernel_boot = bool(config.platform.get("kernel"))
    _sub(_sub(root, "features"), "acpi")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    dev = _sub(root, "devices")
    boot_disk = next((d.name for d in config.disks if d.boot), config.disks[0].name if config.disks else None)
    for i, d in enumerate(config.disks):
        el = _sub(dev, "disk", type="file", device="disk")
        _sub(el, "driver", name="qemu", type="qcow2", cache="none", discard="unmap")
        _sub(el, "source", file=str(sources[d.name]))
        _sub(el, "target", dev=_target(i), bus="virtio")
        _sub(el, "alias", name=f"ua-{d.name}")
        if d.name == boot_disk and not kernel_boot:
            _sub(el, "boot", order="1")
    for n in config.nics:
        el = _sub(dev, "interface", type="network")
        _sub(el, "mac", address=n.mac)
        _sub(el, "source", network=n.network)
        _sub(el, "model", type="virtio")
        _sub(el, "alias", name=f"ua-{n.name}")
    serial = _sub(dev, "serial", type="file")
    _sub(serial, "source", path=str(console), append="on")
    _sub(serial, "target", port="0")
    if config.guest_tools:
        ch = _sub(dev, "channel", type="unix")
        _sub(ch, "target", type="virtio", name=AGENT_CHANNEL)
    _sub(dev, "controller", type="usb", model="none")
    _sub(dev, "memballoon", model="none")
    return ET.tostring(root, encoding="unicode")


def set_disk_sources(xml: str, sources: dict[str, Path]) -> str:
    """The same XML with some disks' active files replaced (and the backing chain libvirt
    recorded dropped: it probes the new one at start)."""
    root = ET.fromstring(xml)
    for el in root.findall("devices/disk"):
        target = el.find("target")
        name = _alias(el) or (target.get("dev") if target is not None else None)
        if name in sources:
            src = el.find("source")
            if src is None:
                src = _sub(el, "source")
            src.set("file", str(sources[name]))
            for b in el.findall("backingStore"):
                el.remove(b)
    return ET.tostring(root, encoding="unicode")
