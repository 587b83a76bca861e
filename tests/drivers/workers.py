"""Child-process workloads for the multi-process and crash tests, plus the replay the parent
uses to know what every snapshot must contain. Run as
    python -m tests.drivers.workers writer SPEC_JSON VM_ID SEED LO HI TAG STEPS SNAP_EVERY DELETE_EVERY PROGRESS [GO [PEER]]
    python -m tests.drivers.workers create SPEC_JSON PREFIX COUNT
    python -m tests.drivers.workers rollback SPEC_JSON VM_ID SNAP_ID
A writer's step k is a deterministic function of (seed, k), so any state it reached can be
recomputed; snapshots are named <tag>-<k> = "the state after k steps"."""

from __future__ import annotations

import json
import os
import random
import struct
import sys
import time
from collections.abc import Iterator

from drivers.base import AlreadyExists
from tests.drivers.conftest import DriverSpec
from tests.drivers.helpers import BS, config


def step_writes(seed: int, k: int, lo: int, hi: int) -> list[tuple[int, bytes]]:
    """The writes of step k inside [lo, hi): aligned and unaligned, sometimes a batch."""
    rng = random.Random(seed * 1_000_003 + k)
    out = []
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
        if rng.random() < 0.5:
            start = lo + rng.randrange((hi - lo) // BS) * BS
            length = min(rng.randint(1, 3) * BS, hi - start)
        else:
            start = rng.randrange(lo, hi - 1)
            length = rng.randint(1, min(2 * BS, hi - start))
        out.append((start, rng.randbytes(length)))
    return out


def apply(buf: bytearray, writes: list[tuple[int, bytes]], base: int = 0) -> None:
    for off, data in writes:
        buf[off - base : off - base + len(data)] = data


def states(seed: int, lo: int, hi: int, upto: int) -> Iterator[bytes]:
    """Region [lo, hi) after 0, 1, ..., upto steps."""
    buf = bytearray(hi - lo)
    yield bytes(buf)
    for k in range(1, upto + 1):
        apply(buf, step_writes(seed, k, lo, hi), lo)
        yield bytes(buf)


def read_progress(path: str) -> int:
    try:
        with open(path, "rb") as f:
            raw = f.read(8)
    except FileNotFoundError:
        return 0
    return struct.unpack("<Q", raw)[0] if len(raw) == 8 else 0


# How long a writer in lockstep waits for its peer before going on alone for good (a dead
# peer fails the test through its exit code; this only keeps the survivor from hanging).
PEER_PATIENCE_S = 120.0


def wait_for_peer(peer: str, step: int) -> bool:
    """Lockstep: start step k only once the peer has started step k-1, so the two writers'
    steps interleave however the machine schedules the processes. False: the peer is gone."""
    deadline = time.monotonic() + PEER_PATIENCE_S
    while read_progress(peer) < step - 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def writer(spec: DriverSpec, vm_id: str, seed: int, lo: int, hi: int, tag: str, steps: int,
           snap_every: int, delete_every: int, progress: str, go: str = "", peer: str = "") -> None:
    drv = spec.open()
    pfd = os.open(progress, os.O_WRONLY | os.O_CREAT, 0o644)
    if go:  # start barrier: say we are ready, wait for the parent's go
        open(f"{go}.ready-{tag}", "w").close()
        while not os.path.exists(go):
            time.sleep(0.001)
    with drv.open_disk(vm_id, "disk0", writable=True) as h:
        for k in range(1, steps + 1):
            if peer and not wait_for_peer(peer, k):
                peer = ""  # waited once in vain: wait no more
            os.pwrite(pfd, struct.pack("<Q", k), 0)  # "step k may have started"
            h.write_many(step_writes(seed, k, lo, hi))
            if k % snap_every == 0:
                drv.create_snapshot(vm_id, f"{tag}-{k:06d}")
            if delete_every and k % delete_every == 0:
                mine = [s for s in drv.list_snapshots(vm_id) if s.name.startswith(tag + "-")]
                if len(mine) >= 3:
                    drv.delete_snapshot(vm_id, mine[len(mine) // 2].id)
    os.close(pfd)


def create(spec: DriverSpec, prefix: str, count: int) -> None:
    drv = spec.open()
    won = []
    for i in range(count):
        try:
            drv.create_vm(config(f"{prefix}{i}"))
            won.append(i)
        except AlreadyExists:
            pass
    print(json.dumps(won))


def main(argv: list[str]) -> None:
    cmd, spec = argv[0], DriverSpec.from_json(argv[1])
    if cmd == "writer":
        vm_id, seed, lo, hi, tag, steps, snap_every, delete_every, progress, *go = argv[2:]
        writer(spec, vm_id, int(seed), int(lo), int(hi), tag, int(steps), int(snap_every),
               int(delete_every), progress, *go)
    elif cmd == "rollback":
        drv = spec.open()
        print("started", flush=True)
        drv.rollback(argv[2], argv[3])
    elif cmd == "create":
        create(spec, argv[2], int(argv[3]))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv[1:])
