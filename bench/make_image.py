#!/usr/bin/env python3
# Origin: /work/shared/bench/make_image.py, copied unchanged (the benchmark's fixed input); this line is the only addition.
"""Synthetic VM disk image generator + changed-block "mutator" (benchmark helper).

  make_image.py create OUT [--size 2GiB] [--seed 1] [--sparse]
  make_image.py mutate IMG [--fraction 0.05] [--seed 2] [--run-blocks 1] [--cbt CHANGED.json]

create: writes a raw image of extents (4 KiB-aligned, 64 KiB..8 MiB long) whose
  type is drawn with weights ~40% zeros, ~30% random (incompressible) bytes,
  ~30% text-like bytes (log/config-ish words; every extent unique, so it
  compresses well but does not dedup against itself).  Fully deterministic from
  --seed.  Zeros are written densely unless --sparse (then they become holes).
mutate: overwrites FRACTION of the image's 64 KiB blocks in place (chosen
  without replacement from a seeded RNG; half get random bytes, half text) and
  writes the sorted changed byte offsets to a JSON file (stand-in for
  changed-block tracking).  --run-blocks N makes changes come in runs of N
  contiguous blocks (default 1 = fully scattered).  Same seed => same changes.

Only the standard library is used (Python >= 3.9 for randbytes).
"""
import argparse
import json
import os
import random
import sys

BLOCK = 64 * 1024          # CBT block size
ALIGN = 4096               # extents are filesystem-block aligned
WRITE_CHUNK = 1 << 20      # generate/write in 1 MiB pieces

# 256-entry vocabulary for text: index = one random byte. Common words appear
# several times (Zipf-ish); some entries end a line. Looks like logs/configs.
_WORDS = (
    "the of and to in is for on with that by this be are from at as it or an "
    "error warning info debug kernel systemd sshd nginx postgres cron usr lib "
    "etc var log tmp home root service started stopped failed connection "
    "request response user session timeout retry value config enabled disabled "
    "true false none default path file open close read write sync mount device "
    "block inode cache memory cpu disk network interface address port host "
    "localhost 127.0.0.1 0x0000 0xffff 200 404 500 GET POST HTTP/1.1 id=1 "
    "pid=42 uid=0 gid=0 status=ok level=3 = : ; { } [ ] ( ) # -- == /"
).split()


def _vocab():
    rng = random.Random(12345)       # fixed: vocabulary is part of the format
    table = []
    while len(table) < 256:
        w = rng.choice(_WORDS[:20]) if rng.random() < 0.35 else rng.choice(_WORDS)
        if rng.random() < 0.08:
            w += "\n"
        else:
            w += " "
        table.append(w.encode())
    return table


VOCAB = _vocab()


def text_bytes(rng, n):
    """n bytes of unique, compressible text: words picked by random bytes."""
    out = bytearray()
    while len(out) < n:
        # ~6.5 bytes/word on average, so n//5 words is usually enough
        out += b"".join(map(VOCAB.__getitem__, rng.randbytes(n // 5 + 64)))
    return bytes(out[:n])


def fill(rng, kind, n):
    if kind == "zero":
        return bytes(n)
    if kind == "random":
        return rng.randbytes(n)
    return text_bytes(rng, n)


def parse_size(s):
    s = s.strip().lower()
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    s = s.removesuffix("ib").removesuffix("b")
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def create(args):
    size = parse_size(args.size)
    size -= size % ALIGN
    rng = random.Random(args.seed)
    kinds, weights = ("zero", "random", "text"), (0.4, 0.3, 0.3)
    stats = dict.fromkeys(kinds, 0)
    with open(args.out, "wb") as f:
        f.truncate(0)
        pos = 0
        while pos < size:
            kind = rng.choices(kinds, weights)[0]
            # extent length: log-uniform 64 KiB .. 8 MiB, 4 KiB aligned
            ln = int(2 ** rng.uniform(16, 23)) // ALIGN * ALIGN
            ln = min(ln, size - pos)
            stats[kind] += ln
            if kind == "zero" and args.sparse:
                f.seek(pos + ln)
            else:
                f.seek(pos)
                left = ln
                while left:
                    k = min(WRITE_CHUNK, left)
                    f.write(fill(rng, kind, k))
                    left -= k
            pos += ln
        f.truncate(size)
    print(json.dumps({"image": args.out, "size": size, "seed": args.seed,
                      "bytes_by_kind": stats,
                      "pct_by_kind": {k: round(100 * v / size, 1) for k, v in stats.items()}}))


def mutate(args):
    size = os.path.getsize(args.img)
    nblocks = size // BLOCK
    rng = random.Random(args.seed)
    want = round(args.fraction * nblocks)
    run = max(1, args.run_blocks)
    # choose run starts (aligned to the run length) without replacement
    starts = rng.sample(range(0, nblocks - run + 1, run), max(1, want // run))
    blocks = sorted(b for s in starts for b in range(s, s + run))
    fd = os.open(args.img, os.O_WRONLY)
    try:
        for b in blocks:
            kind = "random" if rng.random() < 0.5 else "text"
            os.pwrite(fd, fill(rng, kind, BLOCK), b * BLOCK)
        os.fsync(fd)
    finally:
        os.close(fd)
    cbt = args.cbt or args.img + ".changed.json"
    with open(cbt, "w") as f:
        json.dump({"image": args.img, "block_size": BLOCK, "seed": args.seed,
                   "fraction": args.fraction, "run_blocks": run,
                   "changed_blocks": len(blocks),
                   "offsets": [b * BLOCK for b in blocks]}, f)
    print(json.dumps({"image": args.img, "changed_blocks": len(blocks),
                      "changed_bytes": len(blocks) * BLOCK,
                      "pct": round(100 * len(blocks) / nblocks, 2), "cbt": cbt}))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("out")
    c.add_argument("--size", default="2GiB")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument("--sparse", action="store_true", help="leave zero extents as holes")
    m = sub.add_parser("mutate")
    m.add_argument("img")
    m.add_argument("--fraction", type=float, default=0.05)
    m.add_argument("--seed", type=int, default=2)
    m.add_argument("--run-blocks", type=int, default=1)
    m.add_argument("--cbt", help="JSON output (default IMG.changed.json)")
    args = p.parse_args(argv)
    (create if args.cmd == "create" else mutate)(args)


if __name__ == "__main__":
    sys.exit(main())
