"""Repository benchmark (not a test: pytest does not collect this file).

    python3 bench/make_image.py create /tmp/bench.img --size 2GiB --seed 1
    cp /tmp/bench.img /tmp/bench2.img
    python3 bench/make_image.py mutate /tmp/bench2.img --fraction 0.05 --seed 2
    .venv/bin/python -m bench.chunk_sizes --chunk-sizes 64K,128K,256K,1M

Each configuration runs in a fresh subprocess (so peak RSS is its own) against a fresh
repository under --workdir: full backup of bench.img from page cache, incremental backup of
bench2.img with the mutator's changed offsets as changed extents, restore of both points to
new sparse files (checked byte for byte against the images, outside the timings).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.repository import Repository  # noqa: E402
from models.inventory import DiskSpec, Extent, VMConfig  # noqa: E402

MiB = 1 << 20


def parse_size(s: str) -> int:
    s = s.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1]] if s[-1] in mult else int(s)


def file_reader(path: str):
    fd = os.open(path, os.O_RDONLY)
    return lambda off, n: os.pread(fd, n, off)


def file_writer(path: str, size: int):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, size)
    return fd, (lambda off, data: os.pwrite(fd, data, off))


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def same(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


def warm(path: str) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MiB):
            pass


def one(args: argparse.Namespace) -> dict:
    cs = parse_size(args.chunk_size)
    root = Path(args.workdir) / f"repo-{cs // 1024}K-{args.sync}"
    shutil.rmtree(root, ignore_errors=True)
    size = os.path.getsize(args.image)
    cfg = VMConfig(name="bench", disks=[DiskSpec(name="disk0", size_bytes=size)])
    repo = Repository.init(root, chunk_size=cs, compression_level=args.level, sync=args.sync)
    out: dict = {"chunk_size": cs, "sync": args.sync, "level": args.level}

    warm(args.image)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    with repo.begin_backup(vm_id="bench", vm_config=cfg) as s:
        s.backup_disk("disk0", size, file_reader(args.image), workers=args.workers)
        full = s.commit()
    dt = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out["full_s"] = round(dt, 2)
    out["full_cpu_s"] = round(cpu1.ru_utime - cpu0.ru_utime + cpu1.ru_stime - cpu0.ru_stime, 2)
    out["full_MBps"] = round(size / dt / 1e6)
    out["full_stored_MiB"] = round(du(root / "chunks") / MiB, 1)
    out["chunk_files"] = full.disks[0].stats.new_chunks

    if args.incremental:
        changed = json.load(open(args.changed))
        extents = [Extent(offset=o, length=changed["block_size"]) for o in changed["offsets"]]
        warm(args.incremental)
        before = du(root / "chunks")
        t = time.perf_counter()
        with repo.begin_backup(vm_id="bench", vm_config=cfg, base_point=full.id) as s:
            s.backup_disk("disk0", size, file_reader(args.incremental), changed=extents, workers=args.workers)
            inc = s.commit()
        dt = time.perf_counter() - t
        out["incr_s"] = round(dt, 2)
        out["incr_stored_MiB"] = round((du(root / "chunks") - before) / MiB, 1)
        out["incr_read_MiB"] = round(inc.disks[0].stats.read_bytes / MiB, 1)
        out["manifest_KiB"] = round(repo.layout.point(inc.id).stat().st_size / 1024, 1)

    target = os.path.join(args.workdir, "restore.img")
    fd, write_at = file_writer(target, size)
    t = time.perf_counter()
    repo.restore_disk(full.id, "disk0", write_at, target_is_zero=True, workers=args.workers)
    os.fsync(fd)
    dt = time.perf_counter() - t
    os.close(fd)
    out["restore_MBps"] = round(size / dt / 1e6)
    out["restore_exact"] = same(target, args.image)
    if args.incremental:
        fd, write_at = file_writer(target, size)
        repo.restore_disk(inc.id, "disk0", write_at, target_is_zero=True, workers=args.workers)
        os.close(fd)
        out["restore_incr_exact"] = same(target, args.incremental)
    os.unlink(target)
    out["peak_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--image", default="/tmp/bench.img")
    p.add_argument("--incremental", default="/tmp/bench2.img")
    p.add_argument("--changed", default="/tmp/bench2.img.changed.json")
    p.add_argument("--workdir", default="/tmp/abdr-bench")
    p.add_argument("--chunk-sizes", default="64K,128K,256K,1M")
    p.add_argument("--chunk-size", help=argparse.SUPPRESS)
    p.add_argument("--sync", default="syncfs")
    p.add_argument("--level", type=int, default=1)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", action="store_true", help="keep the repositories afterwards")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.chunk_size:
        print(json.dumps(one(args)))
        return
    for cs in args.chunk_sizes.split(","):
        cmd = [sys.executable, __file__, "--chunk-size", cs, *sys.argv[1:]]
        res = subprocess.run(cmd, capture_output=True, text=True)
        print(res.stdout.strip() or res.stderr[-2000:], flush=True)
    # Repositories are removed only at the end: creating files right after deleting many
    # makes ext4 scan for recently deleted inodes, which would penalise the next run.
    if not args.keep:
        for repo in Path(args.workdir).glob("repo-*"):
            shutil.rmtree(repo, ignore_errors=True)


if __name__ == "__main__":
    main()
