#!/usr/bin/env bash
# The libvirt/QEMU test bed (tests/hypervisor, issue 10): QEMU, libvirt's daemon and client,
# libnbd, busybox, a Linux kernel and the QEMU guest agent for the tests' tiny guest (packed
# into its initramfs, starter/stack/guest/initramfs.py), all from Debian's packages,
# and libvirtd running without systemd (these machines have none). Safe to re-run: installs
# only what is missing, starts only what is down. Prints what it did; fails if it cannot.
#
#   bash scripts/ensure-hypervisor.sh [VENV]
#
# With VENV (a virtualenv of a CPython 3.11, like .venv), Debian's libvirt and libnbd Python
# bindings are made importable there too (see docs/libvirt-design-notes.md, "Bindings").
set -euo pipefail
say() { echo "ensure-hypervisor: $*"; }
die() { echo "ensure-hypervisor: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (installs packages, starts libvirtd)"

# libvirt-daemon-system-sysv satisfies libvirt-daemon-system's init alternative without
# pulling systemd in as init; --no-install-recommends keeps out dnsmasq, swtpm, the GUI.
packages=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-system-sysv
  libvirt-clients python3-libvirt python3-libnbd libnbd-bin busybox-static linux-image-amd64
  qemu-guest-agent)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # INITRD=No: the kernel's postinst hook skips building Debian's own initramfs for it (about
  # 30 s here); the tests' guest boots that kernel with an initramfs of its own.
  INITRD=No apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The guest boots the Debian kernel directly; QEMU (run as libvirt-qemu) must read it.
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$kernel" ] || die "no kernel image in /boot (package linux-image-amd64)"
[ -r "$kernel" ] || die "$kernel is not readable"
release=${kernel#/boot/vmlinuz-}
[ -d "/lib/modules/$release/kernel" ] || die "/lib/modules/$release is missing for $kernel"

# Without udev nothing gives /dev/kvm its usual group and mode (udev's default rule:
# root:kvm 0660), and QEMU running as libvirt-qemu could not use it. Without /dev/kvm the
# tests run under TCG.
if [ -c /dev/kvm ]; then
  if [ "$(stat -c %G:%a /dev/kvm)" != "kvm:660" ]; then
    say "giving /dev/kvm group kvm, mode 0660 (as udev would)"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
else
  say "no /dev/kvm: guests run under TCG (slower)"
fi

# The default storage directory (libvirt's 'default' pool path), where the tests put their
# disks: QEMU must be able to traverse it.
mkdir -p /var/lib/libvirt/images
chmod 0711 /var/lib/libvirt/images

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# virtlogd writes the guests' serial consoles and QEMU's logs; libvirtd needs it first.
if ! running /run/virtlogd.pid; then
  say "starting virtlogd"
  virtlogd -d
fi
if ! running /run/libvirtd.pid; then
  say "starting libvirtd"
  libvirtd -d
fi
for _ in $(seq 1 30); do
  if version=$(virsh -c qemu:///system version 2>/dev/null); then
    echo "$version" | sed -n 's/^Running hypervisor: /ensure-hypervisor: hypervisor /p;s/^Using library: /ensure-hypervisor: library /p'
    break
  fi
  sleep 1
done
[ -n "${version:-}" ] || die "libvirtd does not answer on qemu:///system (see /var/log/libvirt/libvirtd.log)"

if [ $# -ge 1 ]; then
  venv=$(cd "$1" && pwd -P)  # the real path: the .pth must outlive a symlink to it
  py="$venv/bin/python"
  [ -x "$py" ] || die "$py not found"
  # Debian builds its bindings for its own python3 (3.11 on Debian 12); a venv of the same
  # minor version loads them (one stable ABI per CPython minor). Only the binding modules
  # are linked in, not all of dist-packages, so nothing else of Debian's leaks in.
  want=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  have=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$want" = "$have" ] || die "$venv runs Python $have; Debian's bindings are built for $want"
  site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  dir="$venv/debian-bindings"
  mkdir -p "$dir"
  for f in /usr/lib/python3/dist-packages/{libvirt,libvirt_qemu,libvirtaio,nbd}.py \
    /usr/lib/python3/dist-packages/{libvirtmod,libvirtmod_qemu,libnbdmod}.cpython-*.so; do
    [ -e "$f" ] || die "$f is missing (packages python3-libvirt, python3-libnbd)"
    ln -sfn "$f" "$dir/$(basename "$f")"
  done
  if [ "$(cat "$site/debian-bindings.pth" 2>/dev/null)" != "$dir" ]; then
    say "linking Debian's libvirt and libnbd bindings into $venv"
    echo "$dir" >"$site/debian-bindings.pth"
  fi
  "$py" -c 'import libvirt, nbd; print("ensure-hypervisor: venv bindings libvirt", libvirt.getVersion(), "libnbd", nbd.NBD().get_version())'
fi
