"""Builds the tests' tiny guest from what the test bed installed (scripts/ensure-hypervisor.sh):
the Debian kernel in /boot, and an initramfs of busybox-static, init.sh and the few kernel
modules the Debian kernel has as modules rather than built in (virtio, the ACPI button,
evdev). With agent=True it also carries the QEMU guest agent of the host's qemu-guest-agent
package (/usr/sbin/qemu-ga, its shared libraries and the dynamic loader, as ldd resolves
them), its fsfreeze hook, and the modules for its virtio-serial port and for a file system
to freeze. Built at test time into a cache directory keyed by its inputs; nothing large is
committed."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
INIT = Path(__file__).with_name("init.sh")
# virtio_pci + virtio_blk: the data disk; button: the ACPI power button; evdev: its events
MODULES = ("virtio_pci", "virtio_blk", "button", "evdev")
AGENT = Path("/usr/sbin/qemu-ga")
FSFREEZE_HOOK = Path(__file__).with_name("fsfreeze-hook.sh")
# virtio_console: the agent's virtio-serial port; brd, ext4 and the crc32c ext4 mounts with: a
# RAM disk's file system for the agent to freeze (it thaws, and runs its thaw hook, only
# after it froze one)
AGENT_MODULES = ("virtio_console", "brd", "crc32c_generic", "ext4")


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    release: str


def newest_kernel() -> tuple[Path, str]:
    kernels = sorted(Path("/boot").glob("vmlinuz-*"),
                     key=lambda p: [(0, int(x)) if x.isdigit() else (1, x) for x in re.split(r"(\d+)", p.name)])
    if not kernels:
        raise RuntimeError("no /boot/vmlinuz-*: run scripts/ensure-hypervisor.sh")
    k = kernels[-1]
    return k, k.name.removeprefix("vmlinuz-")


def module_order(release: str, wanted: tuple[str, ...] = MODULES) -> list[Path]:
    """The .ko files for `wanted` and their dependencies, dependencies first (modules.dep)."""
    base = Path("/lib/modules") / release
    deps: dict[str, list[str]] = {}
    for line in (base / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    by_name = {Path(m).name.removesuffix(".ko").replace("-", "_"): m for m in deps}
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        for d in deps[mod]:
            visit(d)
        order.append(mod)

    for name in wanted:
        if name not in by_name:
            raise RuntimeError(f"kernel {release} has no module {name} (built in?); adjust MODULES")
        visit(by_name[name])
    for m in order:
        if not m.endswith(".ko"):
            raise RuntimeError(f"{m}: compressed modules are not supported by busybox insmod here")
    return [base / m for m in order]


def shared_libraries(binary: Path) -> list[Path]:
    """The shared objects `binary` loads, the dynamic loader included, at the paths ldd
    resolves them to (the paths the loader looks them up at in the guest too)."""
    out = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True).stdout
    if "not found" in out:
        raise RuntimeError(f"{binary}: unresolved shared libraries:\n{out}")
    return [Path(m) for m in re.findall(r"(/\S+) \(0x[0-9a-f]+\)", out)]


class Cpio:
    """A newc ("070701") archive, the format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def tree_file(self, path: Path, mode: int = 0o755) -> None:
        """The host file at its own absolute path, with the directories above it (the
        kernel's unpacker creates none)."""
        name = str(path).lstrip("/")
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                self.dir(d)
        self.file(name, path.read_bytes(), mode)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _initramfs(modules: list[Path], agent: bool) -> bytes:
    a = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "modules"):
        a.dir(d)
        a.dirs.add(d)
    a.chardev("dev/console", 5, 1)  # the kernel opens it for init's stdio before /dev is mounted
    a.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    a.file("init", INIT.read_bytes(), 0o755)
    for m in modules:
        a.file(f"modules/{m.stem}.ko", m.read_bytes())
    a.file("modules/order", "\n".join(m.stem for m in modules).encode() + b"\n")
    if agent:
        for p in (AGENT, *shared_libraries(AGENT)):
            a.tree_file(p)
        a.file("bin/fsfreeze-hook", FSFREEZE_HOOK.read_bytes(), 0o755)
    return gzip.compress(a.finish(), compresslevel=6, mtime=0)


def build_guest(cache_dir: Path, agent: bool = False) -> GuestImage:
    """The guest's kernel and initrd under cache_dir, built once per set of inputs. The
    directory must be one QEMU (user libvirt-qemu) can traverse, e.g. under
    /var/lib/libvirt/images. With agent, the guest runs the QEMU guest agent on its
    org.qemu.guest_agent.0 port when the domain has one (init.sh)."""
    kernel, release = newest_kernel()
    modules = module_order(release, MODULES + AGENT_MODULES if agent else MODULES)
    inputs = [kernel, BUSYBOX, INIT, *modules]
    if agent:
        if not AGENT.exists():
            raise RuntimeError(f"no {AGENT}: run scripts/ensure-hypervisor.sh (package qemu-guest-agent)")
        inputs += [AGENT, *shared_libraries(AGENT), FSFREEZE_HOOK]
    key = hashlib.sha256()
    for p in inputs:
        key.update(str(p).encode() + hashlib.sha256(p.read_bytes()).digest())
    out = Path(cache_dir) / f"guest-{release}{'-agent' if agent else ''}-{key.hexdigest()[:12]}"
    image = GuestImage(out / "vmlinuz", out / "initrd.gz", release)
    if image.initrd.exists():
        return image
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(kernel, tmp / "vmlinuz")  # a copy: libvirt relabels what a domain boots
    (tmp / "initrd.gz").write_bytes(_initramfs(modules, agent))
    for p in (tmp, tmp / "vmlinuz", tmp / "initrd.gz"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    try:
        tmp.rename(out)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return image
