"""Block I/O on a qcow2 chain over real NBD. Either a private qemu-nbd serves the chain on a
socket pair (systemd socket activation, so no socket path and no port) for as long as the
handle lives, or a shared one (NbdServer: a unix socket many clients connect to, what the
AOC simulator exports) is reached by its URI; libnbd talks to it. QEMU does the qcow2 work
(copy-on-write from the backing files, cluster allocation, crash-consistent metadata); this
module only moves bytes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbd

from drivers.base import Bytes, OutOfRange
from drivers.fsio import adjacent_runs, supports_direct
from drivers.qcow2.images import Chain, ImageError, chain_filename, chain_spec

MAX_REQUEST = 32 * 1024 * 1024  # qemu-nbd's largest request
# Adjacent writes of a batch go as one request up to this size: each request is a round
# trip to qemu-nbd, which on a busy machine waits for the server to be scheduled.
COALESCE_BYTES = 4 * 1024 * 1024


def coalesced(writes: Iterable[tuple[int, Bytes]], limit: int) -> Iterator[tuple[int, Bytes]]:
    """The same writes, in the same order, each run of adjacent ones joined into one of at
    most `limit` bytes (drivers.fsio.adjacent_runs)."""
    for start, _, run in adjacent_runs(writes, limit):
        yield start, run[0] if len(run) == 1 else b"".join(run)


def served_filename(chain: Chain, direct: bool) -> str:
    """The chain as qemu-nbd opens it. `direct`: QEMU writes the top file with O_DIRECT
    (where its filesystem allows it), so a restore's gigabytes bypass the page cache:
    nothing reads them back soon, and on the benchmark machine buffered writes of new
    data ran at a fifth of direct ones (dd, 1.2 GiB: 5.7-9.3 s against 1.1-1.4 s).
    Durability is unchanged: flushes stay off (--cache=unsafe) and sync() does an
    fdatasync; the page cache of the file stays coherent (Linux drops the pages an
    O_DIRECT write covers)."""
    if not direct or not supports_direct(chain[0]):
        return chain_filename(chain)
    spec = chain_spec(chain)
    spec["file"]["cache"] = {"direct": True}
    return "json:" + json.dumps(spec)


def dies_with_this_process(argv: list[str]) -> list[str]:
    """`argv` run so that it dies with the thread that starts it (setpriv --pdeathsig,
    util-linux, always on Debian) and never outlives this process. The death signal is set
    in the child after the fork: a parent killed in between would leave the server running
    forever, waiting for a client that never comes and holding the parent's stdout and
    stderr (1 fork in 20 when killed at random, measured). So the child checks, after the
    signal is set, that its parent is still this process, and exits if not."""
    check = 'test "$PPID" = "$0" && exec "$@"'
    return ["setpriv", "--pdeathsig", "KILL", "--", "sh", "-c", check, str(os.getpid()), *argv]


def check_range(size: int, offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > size:
        raise OutOfRange(f"{length} bytes at offset {offset} are outside the disk of {size} bytes")


class NbdImage:
    """One chain served by its own qemu-nbd. Not thread-safe (one handle, one thread)."""

    def __init__(self, chain: Chain, writable: bool, direct: bool = False) -> None:
        self.chain = list(chain)
        self.writable = writable
        # unsafe: an NBD flush writes QEMU's cached qcow2 metadata into the file but does not
        # fdatasync it (sync() does that), so callers can hand a consistent file to another
        # process after every batch without paying a disk barrier each time
        argv = ["qemu-nbd", "--cache=unsafe", "--discard=unmap"]
        if not writable:
            # read-only; a running guest's live disk can be read too (QEMU's locks are off
            # in the chain spec), but only a snapshot's view is a consistent one
            argv.append("--read-only")
        argv.append(served_filename(self.chain, direct))
        self.h = nbd.NBD()
        self.h.connect_systemd_socket_activation(dies_with_this_process(argv))
        self.size = self.h.get_size()

    @classmethod
    def connect(cls, uri: str, writable: bool) -> "NbdImage":
        """A client of a server that runs already (an `nbd://` or `nbd+unix://` URI); its
        flush is the server's (a shared NbdServer's flush reaches the disk)."""
        self = cls.__new__(cls)
        self.chain, self.writable = [], writable
        self.h = nbd.NBD()
        self.h.connect_uri(uri)
        self.size = self.h.get_size()
        return self

    def check_range(self, offset: int, length: int) -> None:
        check_range(self.size, offset, length)

    def read(self, offset: int, length: int) -> bytes:
        self.check_range(offset, length)
        if length == 0:
            return b""
        if length <= MAX_REQUEST:
            return bytes(self.h.pread(length, offset))
        out = bytearray(length)
        view = memoryview(out)
        for at in range(0, length, MAX_REQUEST):
            n = min(MAX_REQUEST, length - at)
            view[at:at + n] = self.h.pread(n, offset + at)
        return bytes(out)

    def write(self, offset: int, data: Bytes) -> None:
        buf = memoryview(data).cast("B")
        self.check_range(offset, len(buf))
        for at in range(0, len(buf), MAX_REQUEST):
            self.h.pwrite(bytes(buf[at:at + MAX_REQUEST]), offset + at)

    def write_many(self, writes: Iterable[tuple[int, Bytes]]) -> None:
        for offset, data in coalesced(writes, COALESCE_BYTES):
            self.write(offset, data)

    def flush(self) -> None:
        """Everything written is in the qcow2 file (page cache): other openers see it."""
        self.h.flush()

    def sync(self) -> None:
        """Everything written is durable (flush, then fdatasync of the top file)."""
        self.h.flush()
        if not self.chain:
            return  # a shared server: its flush synced already (cache=writeback)
        fd = os.open(self.chain[0], os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        try:
            if self.writable:
                self.h.flush()
            self.h.shutdown()  # qemu-nbd exits when its only client leaves
        except nbd.Error:
            pass
        del self.h


# Shared servers are spawned from this one long-lived thread: --pdeathsig fires when the
# thread that started a server ends, and a pool's worker threads come and go.
_SPAWNER = ThreadPoolExecutor(1, thread_name_prefix="qemu-nbd-spawner")
START_TIMEOUT_S = 30.0


class NbdServer:
    """One chain served on a unix socket to any number of clients at once (one qemu-nbd, one
    metadata cache, so concurrent writers stay coherent) until stop(). Its NBD flush reaches
    the disk (cache=writeback). It dies with the process that started it."""

    def __init__(self, chain: Chain, socket: Path, writable: bool) -> None:
        self.chain, self.socket, self.writable = list(chain), socket, writable
        socket.unlink(missing_ok=True)
        argv = ["qemu-nbd", f"--socket={socket}", "--shared=0",
                "--persistent", "--cache=writeback", "--discard=unmap"]
        if not writable:
            argv.append("--read-only")
        argv.append(chain_filename(self.chain))
        self.proc = _SPAWNER.submit(subprocess.Popen, dies_with_this_process(argv), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).result()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.stop()
                raise ImageError(f"qemu-nbd did not start serving {socket}: {err or 'no answer'}")
            time.sleep(0.005)

    @property
    def uri(self) -> str:
        return f"nbd+unix:///?socket={self.socket}"

    def stop(self) -> str:
        """End the server (its clients' next requests fail); returns what it said on stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()  # qemu-nbd flushes and closes the image on SIGTERM
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        self.socket.unlink(missing_ok=True)
        return err
