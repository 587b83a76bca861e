"""Builds the tests' tiny guest from what the test bed installed (scripts/ensure-hypervisor.sh):
the Debian kernel in /boot, and an initramfs of busybox-static, init.sh and the few kernel
modules the Debian kernel has as modules rather than built in (virtio, the ACPI button,
evdev). Built at test time into a cache directory keyed by its inputs; nothing large is
committed."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
INIT = Path(__file__).with_name("init.sh")
# virtio_pci + virtio_blk: the data disk; button: the ACPI power button; evdev: its events
MODULES = ("virtio_pci", "virtio_blk", "button", "evdev")


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


class Cpio:
    """A newc ("070701") archive, the format the kernel unpacks as its initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

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

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self.ino = 0
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def _initramfs(modules: list[Path]) -> bytes:
    a = Cpio()
    for d in ("bin", "dev", "proc", "sys", "tmp", "modules"):
        a.dir(d)
    a.chardev("dev/console", 5, 1)  # the kernel opens it for init's stdio before /dev is mounted
    a.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    a.file("init", INIT.read_bytes(), 0o755)
    for m in modules:
        a.file(f"modules/{m.stem}.ko", m.read_bytes())
    a.file("modules/order", "\n".join(m.stem for m in modules).encode() + b"\n")
    return gzip.compress(a.finish(), compresslevel=6, mtime=0)


def build_guest(cache_dir: Path) -> GuestImage:
    """The guest's kernel and initrd under cache_dir, built once per set of inputs. The
    directory must be one QEMU (user libvirt-qemu) can traverse, e.g. under
    /var/lib/libvirt/images."""
    kernel, release = newest_kernel()
    modules = module_order(release)
    key = hashlib.sha256()
    for p in (kernel, BUSYBOX, INIT, *modules):
        key.update(p.name.encode() + hashlib.sha256(p.read_bytes()).digest())
    out = Path(cache_dir) / f"guest-{release}-{key.hexdigest()[:12]}"
    image = GuestImage(out / "vmlinuz", out / "initrd.gz", release)
    if image.initrd.exists():
        return image
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(kernel, tmp / "vmlinuz")  # a copy: libvirt relabels what a domain boots
    (tmp / "initrd.gz").write_bytes(_initramfs(modules))
    for p in (tmp, tmp / "vmlinuz", tmp / "initrd.gz"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    try:
        tmp.rename(out)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(tmp, ignore_errors=True)
    return image
