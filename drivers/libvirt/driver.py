"""The libvirt/QEMU cluster driver: a cluster is one libvirt connection (a host) plus the
directory where abdr keeps its disks and state. Its VMs are the host's domains that belong
to the directory: those abdr created there (their `<abdr:vm cluster=...>` metadata says so)
and those whose disks all lie in it.

Disks are qcow2 v3 chains (drivers/qcow2): a snapshot freezes each disk's active file and
puts an empty overlay on top (libvirt's external disk-only snapshot for a running domain,
atomic over all disks; qemu-img for a stopped one), so changed blocks between two snapshots
are the clusters the files between them hold (`qemu-img map`, metadata only), for running
and stopped VMs alike, and nothing can be lost by a killed QEMU: frozen files are never
written again. Deleting a snapshot merges the file above its own into it (a libvirt block
commit while running, qemu-img commit when stopped). Data moves over NBD (qemu-nbd +
libnbd). docs/driver-contract.md has the design and its reasons.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import libvirt
import libvirt_qemu

from drivers.base import (
    AlreadyExists,
    Bytes,
    DriverError,
    GuestToolsMissing,
    InvalidState,
    NotFound,
    OneShotIO,
    OperationTimeout,
    ResourceLocked,
    Unsupported,
    check_config,
    validate_name,
)
from drivers.fsio import locked
from drivers.libvirt import domxml
from drivers.qcow2 import chains, images
from drivers.qcow2.nbd import NbdImage
from drivers.qcow2.state import Merge, Snap, VMState, load, save
from models.inventory import VM, Consistency, Extent, GuestSigns, PowerState, SnapshotInfo, VMConfig

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors arrive as exceptions; no stderr noise
BLOCK_SIZE = images.CLUSTER
DEFAULT_ROOT = Path("/var/lib/libvirt/images/abdr")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SNAP_ID_RE = re.compile(r"^snap-[0-9a-f]{12}$")
LOCK_TIMEOUT_S = 120.0
# How long a FILE_SYSTEM_CONSISTENT snapshot waits for the guest agent's freeze (its fsfreeze
# hooks, the flush of the guest's file systems). libvirt bounds only its guest-sync (5 s: an
# agent not started or stopped fails at once or then); the freeze itself it waits for forever
# by default, so a guest whose freeze never ends would hang the snapshot and the VM's lock.
# ABDR_LIBVIRT_AGENT_TIMEOUT_S overrides it.
AGENT_TIMEOUT_S = 60


def agent_timeout_s() -> int:
    return int(os.environ.get("ABDR_LIBVIRT_AGENT_TIMEOUT_S") or AGENT_TIMEOUT_S)


def parse_endpoint(endpoint: str, cluster: str) -> tuple[str, Path]:
    """`<libvirt URI>[#<directory>]` -> (URI, directory); the directory defaults to
    /var/lib/libvirt/images/abdr/<cluster>."""
    uri, _, path = endpoint.partition("#")
    uri = uri or "qemu:///system"
    if "://" not in uri:
        raise DriverError(f"libvirt cluster {cluster!r}: endpoint {endpoint!r} is not a libvirt URI "
                          "(e.g. qemu:///system, or qemu:///system#/srv/abdr/c1 to name its disk directory)")
    root = Path(path) if path else DEFAULT_ROOT / cluster
    if not root.is_absolute():
        raise DriverError(f"libvirt cluster {cluster!r}: directory {path!r} must be absolute")
    return uri, root


def virt_type(conn: libvirt.virConnect) -> str:
    """'kvm' where /dev/kvm runs unmodified guests, else 'qemu' (TCG); ABDR_LIBVIRT_VIRT
    forces one. kvm_pvm (a paravirtual /dev/kvm of nested sandboxes) counts as none."""
    forced = os.environ.get("ABDR_LIBVIRT_VIRT")
    if forced:
        return forced
    if not conn.getURI().startswith("qemu:///"):
        return "kvm"  # a remote host: its own /dev/kvm is not ours to look at
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and not Path("/sys/module/kvm_pvm").exists():
        return "kvm"
    return "qemu"


def _connect(uri: str, cluster: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise DriverError(f"libvirt cluster {cluster!r}: cannot connect to {uri}: {e.get_error_message()}") from None


def _check_root(root: Path, cluster: str) -> None:
    if root.exists() and not root.is_dir():
        raise DriverError(f"libvirt cluster {cluster!r}: {root} is not a directory")


def check_endpoint(endpoint: str, cluster: str) -> None:
    uri, root = parse_endpoint(endpoint, cluster)
    _connect(uri, cluster).close()
    _check_root(root, cluster)


def version_string(v: int) -> str:
    """libvirt's version numbers (major * 1,000,000 + minor * 1,000 + release) as 9.0.0."""
    return f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"


def probe_endpoint(endpoint: str, cluster: str) -> tuple[str, dict[str, str]]:
    """What `abdr status` says of a libvirt cluster: the URI and host that answered, and the
    versions of the libvirt daemon there and of its hypervisor (what `virsh version` calls
    "Running against daemon" and "Running hypervisor")."""
    uri, root = parse_endpoint(endpoint, cluster)
    conn = _connect(uri, cluster)
    try:
        _check_root(root, cluster)
        versions = {"libvirt": version_string(conn.getLibVersion()),
                    "hypervisor": f"{conn.getType()} {version_string(conn.getVersion())}"}
        return f"{conn.getURI()} on {conn.getHostname()}, directory {root}", versions
    except libvirt.libvirtError as e:
        raise DriverError(f"libvirt cluster {cluster!r}: {uri} does not tell its versions: "
                          f"{e.get_error_message()}") from None
    finally:
        conn.close()


def _power(dom: libvirt.virDomain) -> PowerState:
    st = dom.state()[0]
    if st in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED):
        return PowerState.RUNNING
    if st == libvirt.VIR_DOMAIN_PAUSED:
        return PowerState.SUSPENDED
    if st in (libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_CRASHED, libvirt.VIR_DOMAIN_SHUTDOWN):
        return PowerState.STOPPED if not dom.isActive() else PowerState.RUNNING
    return PowerState.UNKNOWN


class LibvirtDriver(OneShotIO):
    block_size = BLOCK_SIZE

    def __init__(self, endpoint: str, cluster: str) -> None:
        self.cluster = cluster
        self.uri, self.root = parse_endpoint(endpoint, cluster)
        self._conn: libvirt.virConnect | None = None
        self._conn_lock = threading.Lock()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "vms").mkdir(exist_ok=True)
        (self.root / "cluster.lock").touch()

    # ------------------------------------------------------------------ plumbing
    @property
    def conn(self) -> libvirt.virConnect:
        with self._conn_lock:
            if self._conn is None or not self._conn.isAlive():
                try:
                    self._conn = libvirt.open(self.uri)
                except libvirt.libvirtError as e:
                    raise DriverError(f"cluster {self.cluster!r}: cannot connect to {self.uri}: "
                                      f"{e.get_error_message()}") from None
            return self._conn

    def _dir(self, vm_id: str) -> Path:
        return self.root / "vms" / vm_id

    def _dom(self, vm_id: str) -> libvirt.virDomain:
        if not isinstance(vm_id, str) or not UUID_RE.match(vm_id):
            raise NotFound(f"no VM with id {vm_id!r} (libvirt VM ids are domain UUIDs)")
        try:
            dom = self.conn.lookupByUUIDString(vm_id)
        except libvirt.libvirtError:
            raise NotFound(f"no VM with id {vm_id} on {self.uri}") from None
        if not self._belongs(domxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))):
            raise NotFound(f"no VM with id {vm_id} in cluster {self.cluster!r} ({self.root})")
        return dom

    def _belongs(self, d: domxml.Domain) -> bool:
        if d.cluster_path is not None:
            return d.cluster_path == str(self.root)
        files = [x.source for x in d.disks]
        return bool(files) and all(f is not None and f.is_relative_to(self.root) for f in files)

    def _parse(self, dom: libvirt.virDomain) -> domxml.Domain:
        return domxml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))

    @contextmanager
    def _cluster_locked(self) -> Iterator[None]:
        with locked(self.root / "cluster.lock", True, LOCK_TIMEOUT_S, f"cluster {self.cluster!r}"):
            yield

    @contextmanager
    def _vm(self, vm_id: str, exclusive: bool = True) -> Iterator[tuple[libvirt.virDomain, VMState]]:
        dom = self._dom(vm_id)
        d = self._dir(vm_id)
        d.mkdir(exist_ok=True)
        (d / "vm.lock").touch()
        with locked(d / "vm.lock", exclusive, LOCK_TIMEOUT_S, f"VM {vm_id}"):
            self._dom(vm_id)  # not deleted while we waited
            st = load(d / "state.json")
            if exclusive:
                st = self._repair(dom, st)
            yield dom, st

    def _save(self, vm_id: str, st: VMState) -> None:
        save(self._dir(vm_id) / "state.json", st)
        bump_generation(self._dir(vm_id))

    def _to_vm(self, dom: libvirt.virDomain, d: domxml.Domain | None = None) -> VM:
        d = d or self._parse(dom)
        sizes = {}
        for disk in d.disks:
            sizes[disk.name] = self._disk_size(dom, disk)
        return VM(id=d.uuid, cluster=self.cluster, config=d.config(sizes), power_state=_power(dom))

    @staticmethod
    def _disk_size(dom: libvirt.virDomain, disk: domxml.DomainDisk) -> int:
        try:
            return int(dom.blockInfo(disk.target)[0])
        except libvirt.libvirtError:
            if disk.source is None:
                raise
            return images.virtual_size([disk.source])

    def _adopt(self, d: domxml.Domain, st: VMState) -> VMState:
        """State for disks abdr has not seen yet (a domain created outside abdr, a disk an
        administrator added): their current file becomes a chain of one."""
        for disk in d.disks:
            if disk.name not in st.active:
                if disk.source is None:
                    raise Unsupported(f"disk {disk.name} of VM {d.name!r} is not a file; abdr protects file disks")
                st.active[disk.name] = str(disk.source)
                st.backing.setdefault(str(disk.source), None)
        return st

    def _need_qcow2(self, d: domxml.Domain) -> None:
        for disk in d.disks:
            if disk.fmt != "qcow2":
                raise Unsupported(
                    f"disk {disk.name} of VM {d.name!r} is {disk.fmt}, not qcow2: abdr's snapshots and "
                    f"changed-block tracking need qcow2 v3; convert it while the VM is stopped "
                    f"(qemu-img convert -O qcow2 -o compat=1.1 {disk.source} NEW.qcow2) and point the domain at it")

    # ------------------------------------------------------------------ repair
    def _repair(self, dom: libvirt.virDomain, st: VMState) -> VMState:
        """Finish what a crash interrupted: unfinished merges, and the domain's disks pointed
        where the state says (the state is written first, the domain after)."""
        d = self._parse(dom)
        st = self._adopt(d, st)
        for m in list(st.merges):
            self._merge(dom, st, m)
        if not dom.isActive():
            want = {disk.name: Path(st.active[disk.name]) for disk in d.disks
                    if disk.source is not None and str(disk.source) != st.active.get(disk.name)}
            if want:
                self.conn.defineXML(domxml.set_disk_sources(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), want))
        else:
            live = domxml.parse(dom.XMLDesc(0))
            for disk in live.disks:  # a running snapshot libvirt took before the state knew it
                if disk.source is not None and str(disk.source) != st.active.get(disk.name):
                    below = st.active.get(disk.name)
                    st.backing[str(disk.source)] = below
                    st.active[disk.name] = str(disk.source)
                    self._save(d.uuid, st)
        # files no record names any more (a crash between creating and recording them)
        refs = set(st.backing) | set(st.active.values())
        for f in self._dir(d.uuid).glob("*.qcow2"):
            if str(f) not in refs:
                f.unlink(missing_ok=True)
        return st

    # ------------------------------------------------------------------ inventory
    def _members(self) -> Iterator[tuple[libvirt.virDomain, domxml.Domain]]:
        for dom in self.conn.listAllDomains():
            try:
                d = self._parse(dom)
            except libvirt.libvirtError:
                continue  # undefined while we listed
            if self._belongs(d):
                yield dom, d

    def list_vms(self) -> list[VM]:
        out = []
        for dom, d in self._members():
            try:
                out.append(self._to_vm(dom, d))
            except libvirt.libvirtError:
                continue
        return sorted(out, key=lambda v: v.name)

    def get_vm(self, vm_id: str) -> VM:
        return self._to_vm(self._dom(vm_id))

    def find_vm(self, name: str) -> VM | None:
        validate_name(name, "VM name")
        for dom, d in self._members():
            if d.name == name:
                return self._to_vm(dom, d)
        return None

    def _name_taken(self, name: str, except_id: str | None = None) -> str | None:
        return next((d.uuid for _, d in self._members() if d.name == name and d.uuid != except_id), None)

    # ------------------------------------------------------------------ lifecycle
    def _new_file(self, vm_id: str, st: VMState, disk: str) -> Path:
        st.seq += 1
        return self._dir(vm_id) / f"{disk}.{st.seq}.qcow2"

    def _define(self, vm_id: str, dom_name: str, config: VMConfig, st: VMState) -> libvirt.virDomain:
        xml = domxml.build(virt_type=virt_type(self.conn), uuid=vm_id, dom_name=dom_name,
                           cluster_path=str(self.root), config=config,
                           sources={d.name: Path(st.active[d.name]) for d in config.disks},
                           console=self._dir(vm_id) / "console.log")
        return self.conn.defineXML(xml)

    def create_vm(self, config: VMConfig) -> VM:
        config = check_config(config)
        with self._cluster_locked():
            taken = self._name_taken(config.name)
            if taken:
                raise AlreadyExists(f"cluster {self.cluster!r} already has a VM named {config.name!r} ({taken})")
            vm_id = str(uuid.uuid4())
            d = self._dir(vm_id)
            d.mkdir()
            (d / "vm.lock").touch()
            st = VMState()
            for disk in config.disks:
                f = self._new_file(vm_id, st, disk.name)
                images.create(f, disk.size_bytes, thin=disk.thin)
                st.active[disk.name], st.backing[str(f)] = str(f), None
            self._save(vm_id, st)
            dom_name = config.name
            try:
                self.conn.lookupByName(dom_name)
                dom_name = f"{config.name}-{vm_id[:8]}"  # domain names are per host, VM names per cluster
            except libvirt.libvirtError:
                pass
            self._define(vm_id, dom_name, config, st)
            return self.get_vm(vm_id)

    def delete_vm(self, vm_id: str) -> None:
        with self._cluster_locked(), self._vm(vm_id) as (dom, st):
            if dom.isActive():
                raise InvalidState(f"VM {vm_id} is RUNNING; stop it before deleting it")
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                              | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            for f in st.backing:
                if Path(f).is_relative_to(self._dir(vm_id)) or Path(f).is_relative_to(self.root):
                    Path(f).unlink(missing_ok=True)
        shutil.rmtree(self._dir(vm_id), ignore_errors=True)

    def update_vm_config(self, vm_id: str, config: VMConfig) -> VM:
        config = check_config(config)
        with self._cluster_locked(), self._vm(vm_id) as (dom, st):
            self._no_pending(st, vm_id)
            taken = self._name_taken(config.name, except_id=vm_id)
            if taken:
                raise AlreadyExists(f"cluster {self.cluster!r} already has a VM named {config.name!r} ({taken})")
            cur = self._to_vm(dom)
            changes_disks = [(d.name, d.size_bytes) for d in cur.config.disks] != [(d.name, d.size_bytes) for d in config.disks]
            if changes_disks and dom.isActive():
                raise InvalidState(f"VM {cur.name!r} ({vm_id}) is RUNNING; stop it to add, grow or remove disks")
            self._reshape_disks(vm_id, st, cur.config, config)
            self._save(vm_id, st)
            self._define(vm_id, self._parse(dom).dom_name, config, st)
            return self.get_vm(vm_id)

    def _reshape_disks(self, vm_id: str, st: VMState, cur: VMConfig, want: VMConfig) -> None:
        """Live disks to `want`'s: new ones created empty, grown ones resized (new bytes
        zero), removed ones dropped from the live chain (files snapshots name stay)."""
        have = {d.name: d for d in cur.disks}
        for d in want.disks:
            old = have.get(d.name)
            if old is None:
                f = self._new_file(vm_id, st, d.name)
                images.create(f, d.size_bytes, thin=d.thin)
                st.active[d.name], st.backing[str(f)] = str(f), None
            elif d.size_bytes < old.size_bytes:
                raise Unsupported(f"disk {d.name} of VM {cur.name!r} cannot shrink "
                                  f"({old.size_bytes} -> {d.size_bytes} bytes)")
            elif d.size_bytes > old.size_bytes:
                images.resize(st.chain(st.active[d.name]), d.size_bytes)
        for name in set(have) - {d.name for d in want.disks}:
            chains.drop_live(st, name)

    @staticmethod
    def _no_pending(st: VMState, vm_id: str) -> None:
        if st.pending_rollback:
            raise InvalidState(f"VM {vm_id} has an unfinished rollback to {st.pending_rollback}; redo it first")

    # ------------------------------------------------------------------ power and network
    def power_on(self, vm_id: str) -> VM:
        with self._vm(vm_id) as (dom, st):
            self._no_pending(st, vm_id)
            if not dom.isActive():
                console = self._dir(vm_id) / "console.log"
                st.console_mark = console.stat().st_size if console.exists() else 0
                self._save(vm_id, st)
                try:
                    dom.create()
                except libvirt.libvirtError as e:
                    msg = e.get_error_message()
                    if e.get_error_code() == libvirt.VIR_ERR_NO_NETWORK or "network" in msg.lower():
                        raise NotFound(f"VM {vm_id} cannot start: {msg}") from None
                    raise DriverError(f"VM {vm_id} cannot start: {msg}") from None
            return self._to_vm(dom)

    def power_off(self, vm_id: str) -> VM:
        with self._vm(vm_id) as (dom, _):
            if dom.isActive():
                try:
                    dom.destroy()
                except libvirt.libvirtError:
                    if dom.isActive():
                        raise
            return self._to_vm(dom)

    def shutdown(self, vm_id: str, timeout_s: float) -> VM:
        dom = self._dom(vm_id)
        if not dom.isActive():
            return self._to_vm(dom)
        try:
            dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError:
            if dom.isActive():
                raise
        deadline = time.monotonic() + timeout_s
        while dom.isActive():
            if time.monotonic() >= deadline:
                raise OperationTimeout(f"VM {vm_id} did not stop within {timeout_s:g}s of an ACPI shutdown; "
                                       "it is still RUNNING (power it off to force)")
            time.sleep(0.1)
        return self._to_vm(dom)

    def attach_network(self, vm_id: str, nic_name: str, network: str) -> VM:
        validate_name(nic_name, "NIC name")
        validate_name(network, "network")
        with self._vm(vm_id) as (dom, st):
            cur = self._to_vm(dom)
            if nic_name not in {n.name for n in cur.config.nics}:
                raise NotFound(f"VM {cur.name!r} ({vm_id}) has no NIC {nic_name!r}")
            cfg = cur.config.model_copy(deep=True)
            for n in cfg.nics:
                if n.name == nic_name:
                    n.network = network
            self._define(vm_id, self._parse(dom).dom_name, cfg, st)
            return self.get_vm(vm_id)

    def guest_signs(self, vm_id: str) -> GuestSigns:
        """This boot's serial console output (its last 4 KiB; abdr's domains log it to a
        file) and whether the QEMU guest agent answers a ping (None: no agent channel)."""
        dom = self._dom(vm_id)
        d = self._parse(dom)
        console = self._dir(vm_id) / "console.log"
        tail: str | None = None
        if d.cluster_path is not None:
            mark = load(self._dir(vm_id) / "state.json").console_mark
            try:
                with console.open("rb") as f:
                    size = f.seek(0, os.SEEK_END)
                    since = mark if mark <= size else 0  # a shorter log was replaced: all of it is this boot's
                    f.seek(max(since, size - 4096))
                    tail = f.read().decode(errors="replace")
            except FileNotFoundError:
                tail = ""
        agent: bool | None = None
        if d.guest_agent:
            agent = False
            if dom.isActive():
                try:
                    libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-ping"}', 5, 0)
                    agent = True
                except libvirt.libvirtError:
                    agent = False
        return GuestSigns(console_tail=tail, agent=agent)

    # ------------------------------------------------------------------ snapshots
    def create_snapshot(self, vm_id: str, name: str,
                        consistency: Consistency = Consistency.CRASH_CONSISTENT) -> SnapshotInfo:
        validate_name(name, "snapshot name")
        consistency = Consistency(consistency)
        with self._vm(vm_id) as (dom, st):
            self._no_pending(st, vm_id)
            d = self._parse(dom)
            cur = self._to_vm(dom, d)
            if consistency == Consistency.FILE_SYSTEM_CONSISTENT and not cur.config.guest_tools:
                raise GuestToolsMissing(
                    f"VM {cur.name!r} ({vm_id}) has no guest tools (no QEMU guest agent channel), so a "
                    "FILE_SYSTEM_CONSISTENT snapshot is impossible; take a CRASH_CONSISTENT one or install guest tools")
            for s in st.snapshots:
                if s.name == name:
                    raise AlreadyExists(f"VM {cur.name!r} ({vm_id}) already has a snapshot named {name!r} ({s.id})")
            self._need_qcow2(d)
            snap = Snap(id=f"snap-{uuid.uuid4().hex[:12]}", name=name, created_at=datetime.now(UTC),
                        consistency=consistency, config=cur.config, files=dict(st.active))
            new = {disk.name: self._new_file(vm_id, st, disk.name) for disk in d.disks}
            if dom.isActive():
                self._snapshot_running(dom, cur, new, consistency)
            else:
                for disk in cur.config.disks:  # what the snapshot captures must survive a power cut
                    fd = os.open(st.active[disk.name], os.O_RDONLY)
                    try:
                        os.fdatasync(fd)
                    finally:
                        os.close(fd)
                    images.create_overlay(new[disk.name], Path(st.active[disk.name]), disk.size_bytes)
            for name, f in new.items():
                st.backing[str(f)] = st.active[name]
                st.active[name] = str(f)
            st.snapshots.append(snap)
            self._save(vm_id, st)  # the snapshot exists from here on
            if not dom.isActive():
                self.conn.defineXML(domxml.set_disk_sources(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), new))
            return snap.info(vm_id)

    def _snapshot_running(self, dom: libvirt.virDomain, vm: VM, new: dict[str, Path],
                          consistency: Consistency) -> None:
        targets = {x.name: x.target for x in self._parse(dom).disks}
        disks = "".join(f"<disk name='{targets[n]}' snapshot='external'><driver type='qcow2'/>"
                        f"<source file='{f}'/></disk>" for n, f in new.items())
        xml = f"<domainsnapshot><disks>{disks}</disks></domainsnapshot>"
        flags = (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
                 | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC)
        if consistency == Consistency.FILE_SYSTEM_CONSISTENT:
            flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
        try:
            if consistency == Consistency.FILE_SYSTEM_CONSISTENT:
                dom.agentSetResponseTimeout(agent_timeout_s(), 0)  # for this domain's agent commands from now on
            dom.snapshotCreateXML(xml, flags)
        except libvirt.libvirtError as e:
            for f in new.values():
                f.unlink(missing_ok=True)
            msg = e.get_error_message()
            if consistency == Consistency.FILE_SYSTEM_CONSISTENT and "agent" in msg.lower():
                raise GuestToolsMissing(f"VM {vm.name!r} ({vm.id}): the QEMU guest agent did not freeze the "
                                        f"file systems ({msg}); take a CRASH_CONSISTENT snapshot instead") from None
            raise DriverError(f"VM {vm.name!r} ({vm.id}): snapshot failed: {msg}") from None

    def list_snapshots(self, vm_id: str) -> list[SnapshotInfo]:
        self._dom(vm_id)
        return [s.info(vm_id) for s in load(self._dir(vm_id) / "state.json").snapshots]

    def get_snapshot(self, vm_id: str, snap_id: str) -> SnapshotInfo:
        self._check_snap_id(vm_id, snap_id)
        st = load(self._dir(vm_id) / "state.json")
        self._dom(vm_id)
        return st.snapshots[st.snap_index(vm_id, snap_id)].info(vm_id)

    @staticmethod
    def _check_snap_id(vm_id: str, snap_id: object) -> str:
        if not isinstance(snap_id, str) or not SNAP_ID_RE.match(snap_id):
            raise NotFound(f"VM {vm_id} has no snapshot {snap_id!r} (ids look like snap-<12 hex digits>)")
        return snap_id

    def delete_snapshot(self, vm_id: str, snap_id: str) -> None:
        self._check_snap_id(vm_id, snap_id)
        with self._vm(vm_id) as (dom, st):
            k = st.snap_index(vm_id, snap_id)
            if st.pending_rollback == snap_id:
                raise InvalidState(f"VM {vm_id} is being rolled back to {snap_id}; redo the rollback first")
            chains.forget_snapshot(st, k)
            self._save(vm_id, st)  # gone from here on; the merges below are redone after a crash
            for m in list(st.merges):
                self._merge(dom, st, m)

    def _merge(self, dom: libvirt.virDomain, st: VMState, m: Merge) -> None:
        """Commit `child` into `parent` (which only deleted snapshots read), then let
        whatever named `child` name `parent`: the file count stays the snapshot count + 1."""
        bump_generation(self._dir(dom.UUIDString()))  # before any file changes: lock-free readers look again
        if m.child in st.backing:
            if dom.isActive() and m.child in self._live_chain(dom, m.disk):
                self._block_commit(dom, m)
            elif not dom.isActive():
                chains.commit_stopped(st, m)
        was_active = chains.relink(st, m)
        self._save(dom.UUIDString(), st)
        if was_active and not dom.isActive():
            self.conn.defineXML(domxml.set_disk_sources(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
                                                        {m.disk: Path(m.parent)}))
        Path(m.child).unlink(missing_ok=True)

    def _live_chain(self, dom: libvirt.virDomain, disk: str) -> list[str]:
        root = domxml.ET.fromstring(dom.XMLDesc(0))
        for el in root.findall("devices/disk"):
            alias = el.find("alias")
            target = el.find("target")
            name = alias.get("name", "") if alias is not None else ""
            if (name[3:] if name.startswith("ua-") else (target.get("dev") if target is not None else None)) != disk:
                continue
            out: list[str] = []
            node: domxml.ET.Element | None = el
            while node is not None:
                src = node.find("source")
                if src is not None and src.get("file"):
                    out.append(src.get("file", ""))
                node = node.find("backingStore")
            return out
        return []

    def _block_commit(self, dom: libvirt.virDomain, m: Merge) -> None:
        target = next(x.target for x in domxml.parse(dom.XMLDesc(0)).disks if x.name == m.disk)
        active = self._live_chain(dom, m.disk)[0] == m.child
        flags = libvirt.VIR_DOMAIN_BLOCK_COMMIT_ACTIVE if active else 0
        dom.blockCommit(target, m.parent, None if active else m.child, 0, flags)
        deadline = time.monotonic() + 24 * 3600
        while time.monotonic() < deadline:
            info = dom.blockJobInfo(target, 0)
            if not info:
                if not active:
                    return  # a non-active commit ends by itself
                raise DriverError(f"block commit of {m.child} ended without reaching the pivot")
            if info.get("end", 0) and info.get("cur") == info.get("end") and (active or info.get("ready", 1)):
                if active:
                    dom.blockJobAbort(target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
                    while dom.blockJobInfo(target, 0):
                        time.sleep(0.05)
                    return
            time.sleep(0.05)
        raise OperationTimeout(f"block commit of {m.child} did not finish")

    def rollback(self, vm_id: str, snap_id: str) -> VM:
        self._check_snap_id(vm_id, snap_id)
        with self._cluster_locked(), self._vm(vm_id) as (dom, st):
            snap = st.snapshots[st.snap_index(vm_id, snap_id)]
            if dom.isActive():
                raise InvalidState(f"VM {vm_id} is RUNNING; stop it before rolling it back")
            if st.pending_rollback not in (None, snap_id):
                raise InvalidState(f"VM {vm_id} has an unfinished rollback to {st.pending_rollback}; redo it first")
            st.pending_rollback = snap_id
            self._save(vm_id, st)
            chains.rollback_disks(st, snap, lambda disk: self._new_file(vm_id, st, disk),
                                  lambda: self._save(vm_id, st))
            cfg = snap.config.model_copy(update={"name": self._parse(dom).name}, deep=True)
            self._define(vm_id, self._parse(dom).dom_name, cfg, st)
            st.pending_rollback = None
            self._save(vm_id, st)
            return self.get_vm(vm_id)

    # ------------------------------------------------------------------ extents
    def _top(self, vm_id: str, st: VMState, disk: str, snap_id: str | None) -> str:
        """The top file of a disk's view: a snapshot's frozen file or the live one."""
        validate_name(disk, "disk name")
        if snap_id is None:
            if disk not in st.active:
                raise NotFound(f"VM {vm_id} has no disk {disk!r}")
            return st.active[disk]
        self._check_snap_id(vm_id, snap_id)
        snap = st.snapshots[st.snap_index(vm_id, snap_id)]
        if disk not in snap.files:
            raise NotFound(f"snapshot {snap_id} of VM {vm_id} has no disk {disk!r}")
        return snap.files[disk]

    def _view(self, vm_id: str, st: VMState, disk: str, snap_id: str | None) -> tuple[str, int]:
        """(top file, size) of a disk's view."""
        top = self._top(vm_id, st, disk, snap_id)
        if snap_id is None:
            return top, images.virtual_size([Path(top)])
        return top, st.snapshots[st.snap_index(vm_id, snap_id)].config.disk(disk).size_bytes

    def allocated_extents(self, vm_id: str, disk: str, snap_id: str | None = None) -> list[Extent]:
        with self._vm(vm_id, exclusive=False) as (_, st):
            top, size = self._view(vm_id, st, disk, snap_id)
            return chains.runs_to_extents(images.data_runs(st.chain(top)), self.block_size, size)

    def changed_extents(self, vm_id: str, disk: str, base_snap_id: str,
                        snap_id: str | None = None) -> list[Extent]:
        with self._vm(vm_id, exclusive=False) as (_, st):
            self._check_snap_id(vm_id, base_snap_id)
            b = st.snap_index(vm_id, base_snap_id)
            if snap_id is not None and st.snap_index(vm_id, self._check_snap_id(vm_id, snap_id)) < b:
                raise InvalidState(f"VM {vm_id}: snapshot {snap_id} is older than base {base_snap_id}; changed extents go from older to newer")
            base, _ = self._view(vm_id, st, disk, base_snap_id)
            top, size = self._view(vm_id, st, disk, snap_id)
            return chains.runs_to_extents(chains.changed_runs(st, top, base), self.block_size, size)

    # ------------------------------------------------------------------ data
    def open_disk(self, vm_id: str, disk: str, snap_id: str | None = None,
                  writable: bool = False) -> LibvirtDiskHandle:
        if writable and snap_id is not None:
            raise InvalidState("snapshot views are read-only")
        with self._vm(vm_id, exclusive=False) as (dom, st):
            self._view(vm_id, st, disk, snap_id)
            if writable and dom.isActive():
                raise InvalidState(f"VM {vm_id} is RUNNING: its live disk is the guest's; stop it to write")
        return LibvirtDiskHandle(self, vm_id, disk, snap_id, writable)


def generation(vm_dir: Path) -> str:
    try:
        return (vm_dir / "generation").read_text()
    except FileNotFoundError:
        return ""


def bump_generation(vm_dir: Path) -> str:
    """A new token for 'the VM's files changed': a qemu-nbd caches qcow2 metadata (L2 and
    refcount tables), so a handle whose server opened the files before someone else wrote
    or restructured them must reopen, or two servers would allocate the same clusters.
    Written under the VM's EX lock; a hint only (a crash ends every server anyway)."""
    token = uuid.uuid4().hex
    (vm_dir / "generation").write_text(token)
    return token


class LibvirtDiskHandle:
    """A disk view served by its own qemu-nbd. Every call holds the VM's lock (SH for reads,
    EX for writes) and re-checks what it serves: a snapshot deleted meanwhile raises
    NotFound; a live view whose files anyone else wrote or restructured meanwhile (the
    generation token moved) is reopened, so at most one server's caches are ever current."""

    def __init__(self, driver: LibvirtDriver, vm_id: str, disk: str, snap_id: str | None, writable: bool) -> None:
        self.d, self.vm_id, self.disk, self.snap_id, self.writable = driver, vm_id, disk, snap_id, writable
        self._img: NbdImage | None = None
        self._top: str | None = None
        self._gen = ""
        self._dom = driver._dom(vm_id)
        with self._locked(False) as img:
            self.size = img.size

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[NbdImage]:
        vm_dir = self.d._dir(self.vm_id)
        with locked(vm_dir / "vm.lock", exclusive or self.writable, LOCK_TIMEOUT_S, f"VM {self.vm_id}"):
            gen = generation(vm_dir)
            if self._img is None or gen != self._gen:  # first call, or the files changed: look again
                # (abdr's power_on moves the token; a start behind abdr's back is not seen)
                if self.writable and self._dom.isActive():
                    raise InvalidState(f"VM {self.vm_id} started: its live disk is the guest's now")
                st = load(vm_dir / "state.json")
                top = self.d._top(self.vm_id, st, self.disk, self.snap_id)  # NotFound: a snapshot deleted
                if self._img is not None and self.snap_id is None:
                    self._img.close()  # someone else wrote or restructured the live files
                    self._img = None
                if self._img is None:  # a snapshot's server stays: its view never changes
                    # writes bypass the page cache (restores, replicas: whole disks written once)
                    self._img, self._top = NbdImage(st.chain(top), self.writable, direct=self.writable), top
                self._gen = gen
            try:
                yield self._img
            finally:
                if self.writable:
                    self._gen = bump_generation(vm_dir)  # our writes: other handles must reopen

    def read(self, offset: int, length: int) -> bytes:
        if self.snap_id is not None and self._img is not None:
            # A snapshot's view never changes, so no lock: a sequence check is enough. Every
            # change of the VM's files moves the token before it touches a file (the state is
            # saved first), so an unchanged token around the read means it read the view.
            vm_dir = self.d._dir(self.vm_id)
            gen = generation(vm_dir)
            if gen == self._gen:
                data = self._img.read(offset, length)
                if generation(vm_dir) == gen:
                    return data
        with self._locked(False) as img:
            return img.read(offset, length)

    def write(self, offset: int, data: Bytes) -> None:
        if not self.writable:
            raise InvalidState("this handle is read-only")
        with self._locked(True) as img:
            img.write(offset, data)
            img.flush()  # the file is whole before the lock goes: a snapshot may freeze it next

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        if not self.writable:
            raise InvalidState("this handle is read-only")
        with self._locked(True) as img:
            img.write_many(writes)
            img.flush()

    def flush(self) -> None:
        if self._img is not None and self.writable:
            with self._locked(True) as img:
                img.sync()

    def close(self) -> None:
        if self._img is not None:
            self._img.close()
            self._img = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


__all__ = ["LibvirtDriver", "LibvirtDiskHandle", "ResourceLocked"]
