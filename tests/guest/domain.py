"""The tiny guest as a real libvirt domain on qemu:///system: direct kernel boot, one qcow2 v3
data disk (virtio, vda), the serial console to a file, no network. Waits for the guest's own
console markers, never for a flag the host set."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import libvirt

from starter.stack.guest.initramfs import GuestImage

URI = "qemu:///system"
# Under libvirt's default storage directory: QEMU runs as libvirt-qemu and must reach the
# kernel, initrd, disks and console there (pytest's tmp_path, mode 0700, it could not).
ROOT = Path("/var/lib/libvirt/images/abdr-tests")
MEMORY_MIB = 128  # the Debian kernel does not start in 64 MiB
NAME_PREFIX = "abdr-test-"


def virt_type() -> str:
    """'kvm' where /dev/kvm can run an unmodified kernel, else 'qemu' (TCG). ABDR_TEST_VIRT
    forces one. kvm_pvm (a paravirtual /dev/kvm for nested sandboxes) runs only PVM-built
    guest kernels: the Debian kernel hangs in its decompressor there, so it counts as none."""
    forced = os.environ.get("ABDR_TEST_VIRT")
    if forced:
        return forced
    if os.access("/dev/kvm", os.R_OK | os.W_OK) and not Path("/sys/module/kvm_pvm").exists():
        return "kvm"
    return "qemu"


def create_disk(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "compat=1.1", str(path), size], check=True)
    return path


@contextmanager
def workdir(conn: libvirt.virConnect) -> Iterator[Path]:
    """A fresh directory for one test's disks and consoles; its domains are destroyed and
    undefined (with their checkpoint metadata) and the directory removed afterwards."""
    d = ROOT / uuid.uuid4().hex[:12]
    d.mkdir(parents=True)
    d.chmod(0o755)
    try:
        yield d
    finally:
        for dom in conn.listAllDomains():
            if dom.name().startswith(NAME_PREFIX + d.name):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                                  | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        shutil.rmtree(d, ignore_errors=True)


def domain_xml(name: str, image: GuestImage, disk: Path, console: Path, cmdline: str) -> str:
    return f"""<domain type='{virt_type()}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>{escape(str(image.kernel))}</kernel>
    <initrd>{escape(str(image.initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none'/>
      <source file={quoteattr(str(disk))}/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path={quoteattr(str(console))} append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>"""


@dataclass
class Guest:
    dom: libvirt.virDomain
    disk: Path
    console: Path
    mark: int = 0  # console offset where the current boot's output starts

    @property
    def name(self) -> str:
        return self.dom.name()

    def start(self) -> None:
        self.mark = self.console.stat().st_size if self.console.exists() else 0
        self.dom.create()

    def output(self) -> str:
        if not self.console.exists():
            return ""
        with self.console.open("rb") as f:
            f.seek(self.mark)
            return f.read().decode(errors="replace")

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 180.0) -> re.Match[str]:
        """The first match of pattern in this boot's console output; fails when the guest
        stops or the time is up, with the console's tail."""
        deadline = time.monotonic() + timeout
        while True:
            m = pattern.search(self.output())
            if m:
                return m
            if not self.dom.isActive():
                raise AssertionError(f"{self.name} stopped before {pattern.pattern!r}:\n{self.output()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {pattern.pattern!r} in {timeout}s:\n{self.output()[-2000:]}")
            time.sleep(0.2)

    def wait_counter(self, c: int, timeout: float = 180.0) -> int:
        """Waits until the guest logs a write counter of at least c (it logs every 50th)."""
        log = re.compile(r"ABDR-GUEST-LOG c=(\d+)")
        deadline = time.monotonic() + timeout
        while True:
            got = [int(x) for x in log.findall(self.output())]
            if got and got[-1] >= c:
                return got[-1]
            if not self.dom.isActive() or time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no write counter {c} (last {got[-1:]}):\n{self.output()[-2000:]}")
            time.sleep(0.2)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The guest frozen (QEMU drains and flushes its disks on stop) for an instant that a
        host-side oracle can read; it resumes where it was."""
        self.dom.suspend()
        try:
            yield
        finally:
            self.dom.resume()

    def wait_shutoff(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.dom.isActive():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} still running after {timeout}s:\n{self.output()[-2000:]}")
            time.sleep(0.2)

    def qemu_owner(self) -> tuple[int, int]:
        """uid and gid the running QEMU has (its DAC label in the live XML): a directory for
        a socket QEMU must create (an NBD export) has to be writable by them."""
        m = re.search(r"<seclabel type='dynamic' model='dac'[^>]*>\s*<label>\+(\d+):\+(\d+)</label>", self.dom.XMLDesc())
        if not m:
            raise AssertionError(f"{self.name}: no DAC label in the live XML")
        return int(m.group(1)), int(m.group(2))

    def socket_dir(self, path: Path) -> Path:
        path.mkdir(exist_ok=True)
        os.chown(path, *self.qemu_owner())
        path.chmod(0o700)
        return path

    def qemu_pid(self) -> int:
        return int(Path(f"/run/libvirt/qemu/{self.name}.pid").read_text())


def define_guest(conn: libvirt.virConnect, image: GuestImage, wd: Path, tag: str, disk: Path,
                 mode: str = "write", interval_us: int = 50000) -> Guest:
    """A persistent domain (checkpoints need one) named after the workdir, not started."""
    name = f"{NAME_PREFIX}{wd.name}-{tag}"
    console = wd / f"{tag}.console"
    cmdline = f"console=ttyS0 panic=-1 quiet abdr.mode={mode} abdr.interval_us={interval_us}"
    dom = conn.defineXML(domain_xml(name, image, disk, console, cmdline))
    return Guest(dom, disk, console)
