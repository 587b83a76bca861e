"""`python -m bench [backup|userpath|replication|libvirt|scale|all]` (default all). See README.md, "Benchmarks"."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from bench.common import ROOT, SIZE, BenchError, log


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="abdr benchmarks (never part of the tests)")
    p.add_argument("which", nargs="?", default="all", choices=["all", "backup", "userpath", "replication", "libvirt", "scale"])
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "out",
                   help="images, scratch space and results-<name>.json (default bench/out, gitignored)")
    p.add_argument("--repeat", type=int, default=5, help="backup: runs per tool, medians reported (default 5)")
    p.add_argument("--vms", type=int, default=50, help="replication: VMs failed over at once (default 50)")
    p.add_argument("--image-size", default=SIZE,
                   help=f"libvirt, userpath: the image's size (default {SIZE}; anything else is a trial run, not the figures)")
    p.add_argument("--scale-vms", type=int, default=200, help="scale: VMs in the plan (default 200)")
    p.add_argument("--scale-parallel", type=int, default=4, help="scale: backups (replications) at a time (default 4)")
    p.add_argument("--scale-kind", choices=["backup", "replication"], default="backup",
                   help="scale: the plan measured (default backup)")
    args = p.parse_args(argv)
    work = args.work_dir.absolute()
    t0 = time.monotonic()
    try:
        if args.which in ("all", "backup"):
            from bench.backup import bench_backup

            bench_backup(work, repeat=args.repeat)
        if args.which in ("all", "userpath"):
            from bench.userpath import bench_userpath

            bench_userpath(work, size=args.image_size)
        if args.which in ("all", "replication"):
            from bench.replication import bench_replication

            bench_replication(work, vms=args.vms)
        if args.which in ("all", "libvirt"):
            from bench.libvirt import bench_libvirt

            bench_libvirt(work, size=args.image_size)
        if args.which in ("all", "scale"):
            from bench.scale import bench_scale

            bench_scale(work, vms=args.scale_vms, parallel=args.scale_parallel, kind=args.scale_kind)
    except BenchError as e:
        print(f"\nBENCHMARK FAILED: {e}", file=sys.stderr, flush=True)
        return 1
    log(f"done in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
