"""The data pattern the tiny guest writes (init.sh), as the host checks it.

The disk is an array of 4 KiB blocks. Block 0 is the head: "ABDR-HEAD %08d" with the
counter C of the last complete write. Write number c (1, 2, ...) goes to block
position(c) = 1 + (c-1)*STRIDE mod (nblk-1), a permutation of the data blocks, so writes
spread over the whole disk like a real workload's. Its content is a header naming the block
and the counter, then a body derived from sha256("n:c"): any block can be checked on its
own, and the whole disk is known from C alone. The guest writes the data block, then the head
(both with fsync), so a crash-consistent view has every write up to C, and write C+1 may or
may not be there.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

BLOCK = 4096
STRIDE = 7919  # prime: a full cycle over the data blocks for any disk not a multiple of it

READY = re.compile(r"ABDR-GUEST-READY mode=(\w+) nblk=(\d+) c=(\d+)")
VERDICT = re.compile(r"ABDR-GUEST-VERDICT (\w+) c=(\d+) bad=(\d+) sha256=([0-9a-f]{64})")
POWEROFF = re.compile(r"ABDR-GUEST-POWEROFF c=(\d+)")
LOG = re.compile(r"ABDR-GUEST-LOG c=(\d+)")
ERROR = re.compile(r"ABDR-GUEST-ERROR .*")
AGENT = re.compile(r"ABDR-GUEST-AGENT (pid=\d+|off) port=(\S+)")  # qemu-ga started (or left off)
FREEZE = re.compile(r"ABDR-GUEST-FREEZE c=(\d+|none)")  # the agent's freeze hook: writer paused after write C
THAW = re.compile(r"ABDR-GUEST-THAW")
AGENT_STOPPED = re.compile(r"ABDR-GUEST-AGENT stopped")  # abdr.agent=stopped: qemu-ga got SIGSTOP


def position(c: int, nblk: int) -> int:
    return 1 + (c - 1) * STRIDE % (nblk - 1)


def data_block(n: int, c: int) -> bytes:
    h = hashlib.sha256(f"{n}:{c}".encode()).hexdigest()
    return (f"ABDR-BLK {n:08d} {c:08d}\n" + h * 64).encode()[:BLOCK]


def head_block(c: int) -> bytes:
    return f"ABDR-HEAD {c:08d}\n".encode().ljust(BLOCK, b"\0")


def counter(image: bytes) -> int:
    m = re.match(rb"ABDR-HEAD (\d{8})\n", image[:BLOCK])
    return int(m.group(1)) if m else 0


def expected_image(nblk: int, c: int) -> bytes:
    """The disk after writes 1..c on a zeroed disk of nblk blocks."""
    img = bytearray(nblk * BLOCK)
    if c:
        img[:BLOCK] = head_block(c)
    for i in range(max(1, c - nblk + 2), c + 1):
        n = position(i, nblk)
        img[n * BLOCK : (n + 1) * BLOCK] = data_block(n, i)
    return bytes(img)


@dataclass
class Check:
    counter: int
    bad_blocks: list[int] = field(default_factory=list)
    in_flight: bool = False  # write counter+1 had reached its block

    @property
    def ok(self) -> bool:
        return not self.bad_blocks


def check_image(image: bytes) -> Check:
    """Is this a crash-consistent state of the guest's disk? Every block must be what writes
    1..C left, except that write C+1 may have reached its block and not yet the head."""
    nblk = len(image) // BLOCK
    c = counter(image)
    want = expected_image(nblk, c)
    result = Check(c)
    nxt = position(c + 1, nblk)
    for n in range(nblk):
        got = image[n * BLOCK : (n + 1) * BLOCK]
        if got == want[n * BLOCK : (n + 1) * BLOCK]:
            continue
        if n == nxt and got == data_block(n, c + 1):
            result.in_flight = True
            continue
        result.bad_blocks.append(n)
    return result
