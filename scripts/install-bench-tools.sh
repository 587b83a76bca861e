#!/usr/bin/env bash
# The peer tools the benchmarks measure abdr against, from Debian's packages:
# restic (backup; the comparison is specified against 0.14, Debian 12's version), rsync
# (replication) and virtnbdbackup (libvirt; 1.9.15 in Debian 12, with virtnbdrestore).
# Installs only what is missing. The libvirt benchmark also needs the hypervisor test bed
# (scripts/ensure-hypervisor.sh, which `make bench` runs first).
set -euo pipefail
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
command -v virtnbdbackup >/dev/null 2>&1 || missing+=(virtnbdbackup)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
restic version
case "$(restic version)" in
  "restic 0.14."*) ;;
  *) echo "warning: the backup benchmark compares against restic 0.14; this one differs" >&2 ;;
esac
# sed, not head: head would close the pipe early and pipefail would turn rsync's SIGPIPE
# into a failure of this script
rsync --version | sed -n 1p
echo "virtnbdbackup $(virtnbdbackup -V)"
