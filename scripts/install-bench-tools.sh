#!/usr/bin/env bash
# The peer tools the benchmarks measure abdr against, from Debian's packages:
# restic (backup) and rsync (replication). Installs only what is missing.
set -euo pipefail
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v rsync >/dev/null 2>&1 || missing+=(rsync)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
restic version
rsync --version | head -n 1
