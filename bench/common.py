"""Shared plumbing of the benchmarks: the fixed input images, child processes measured with
os.wait4 (wall seconds + peak RSS), byte-for-byte comparison, du, tables and JSON output."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MAKE_IMAGE = Path(__file__).with_name("make_image.py")
MiB = 1 << 20
GiB = 1 << 30
SIZE = "2GiB"  # the fixed input: make_image.py create --size 2GiB --seed 1
BASE_SEED, MUTATE_SEED, FRACTION = 1, 2, 0.05
TOKEN = "abdr-bench-transport-token"  # the sites' transport secret in the replication benchmark


class BenchError(Exception):
    """A step failed or a verification did not hold: the run is worthless, say so loudly."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- inputs
@dataclass
class Images:
    base: Path  # make_image.py create --size 2GiB --seed 1
    mutated: Path  # a copy of base after make_image.py mutate --fraction 0.05 --seed 2
    size: int


def images(work: Path, size: str = SIZE) -> Images:
    """The benchmark's fixed input images, generated into the work dir once and reused
    (`size` other than 2GiB: a quick trial of a benchmark, not its figures)."""
    work.mkdir(parents=True, exist_ok=True)
    base = work / f"image-{size}-seed{BASE_SEED}.raw"
    mutated = work / f"image-{size}-seed{BASE_SEED}-mut{MUTATE_SEED}-{FRACTION:g}.raw"
    if not base.exists():
        log(f"generating {base.name} (make_image.py create --size {size} --seed {BASE_SEED})")
        tmp = base.with_suffix(".partial")
        run([PY, str(MAKE_IMAGE), "create", str(tmp), "--size", size, "--seed", str(BASE_SEED)])
        tmp.rename(base)
    if not mutated.exists():
        log(f"generating {mutated.name} (copy + make_image.py mutate --fraction {FRACTION:g} --seed {MUTATE_SEED})")
        tmp = mutated.with_suffix(".partial")
        copy_file(base, tmp)
        run([PY, str(MAKE_IMAGE), "mutate", str(tmp), "--fraction", f"{FRACTION:g}", "--seed", str(MUTATE_SEED),
             "--cbt", str(work / "mutate.changed.json")])
        tmp.rename(mutated)
    return Images(base, mutated, base.stat().st_size)


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    return p


def copy_file(src: Path, dst: Path) -> None:
    """A real copy (no reflink: both tools must read their own bytes)."""
    run(["cp", "--sparse=never", "--reflink=never", str(src), str(dst)])


def warm(path: Path) -> float:
    """Read a file once (page cache warm for the next reader); returns seconds."""
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * MiB)
        while f.readinto(buf):
            pass
    return time.perf_counter() - t


def same_bytes(a: Path, b: Path) -> None:
    """Byte-for-byte equality of two files, or BenchError naming the first difference."""
    sa, sb = a.stat().st_size, b.stat().st_size
    if sa != sb:
        raise BenchError(f"VERIFY FAILED: {a} is {sa} bytes, {b} is {sb} bytes")
    step = 8 * MiB
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        off = 0
        while True:
            x, y = fa.read(step), fb.read(step)
            if x != y:
                i = next(k for k in range(min(len(x), len(y))) if x[k] != y[k]) if len(x) == len(y) else 0
                raise BenchError(f"VERIFY FAILED: {a} and {b} differ at byte {off + i}")
            if not x:
                return
            off += len(x)


def du(path: Path) -> dict[str, int]:
    """Disk usage (allocated blocks, what `du -s` reports) and apparent size, in bytes."""
    alloc = int(run(["du", "-s", "-B1", str(path)]).stdout.split()[0])
    apparent = int(run(["du", "-s", "-b", str(path)]).stdout.split()[0])
    return {"du": alloc, "apparent": apparent}


# ---------------------------------------------------------------------------- children
@dataclass
class Measured:
    name: str
    wall_s: float  # spawn to exit, as seen by the parent
    max_rss: int  # bytes, ru_maxrss of the child (os.wait4)
    cpu_user_s: float = 0.0  # the child's CPU time (os.wait4): above wall = more than one core used
    cpu_sys_s: float = 0.0
    ctx_switches: int = 0  # voluntary + involuntary (os.wait4)
    result: dict[str, Any] = field(default_factory=dict)  # what an abdr step reported

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(name: str, cmd: list[str], logdir: Path, env: dict[str, str] | None = None,
            result_file: Path | None = None) -> Measured:
    """Run `cmd` as a child; wall time from spawn to reaping, peak RSS from os.wait4. Dirty
    pages of earlier steps are written back first (sync), outside the measured time."""
    logdir.mkdir(parents=True, exist_ok=True)
    os.sync()  # no writeback left over from earlier steps competes with this one
    out, err = logdir / f"{name}.out", logdir / f"{name}.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, env={**os.environ, **(env or {})}, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"step {name} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                         f"{err.read_text(errors='replace')[-3000:]}")
    result = json.loads(result_file.read_text()) if result_file is not None else {}
    return Measured(name, wall, usage.ru_maxrss * 1024, usage.ru_utime, usage.ru_stime,
                    usage.ru_nvcsw + usage.ru_nivcsw, result)


def abdr_step(step: str, args: dict[str, Any], logdir: Path, tag: str | None = None) -> Measured:
    """One abdr step (bench/steps.py) in a child process; `tag` names its logs (default: step)."""
    name = tag or step
    res = logdir / f"{name}.result.json"
    res.unlink(missing_ok=True)
    return measure(name, [PY, "-m", "bench.steps", step, json.dumps(args), str(res)], logdir, result_file=res)


# ---------------------------------------------------------------------------- output
def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cores": len(os.sched_getaffinity(0)), "cpu": cpu, "memory_gib": round(mem / GiB, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


class Load:
    """CPU time the rest of the machine used while the benchmark ran: all CPUs' busy time
    (/proc/stat) minus what this process and its children used. Other work on a 2-core
    machine distorts the figures, so it is reported with them."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.ours0 = time.monotonic(), _busy(), _ours()

    def report(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        other = max(0.0, (_busy() - self.busy0) - (_ours() - self.ours0))
        cores = len(os.sched_getaffinity(0))
        return {"wall_s": wall, "other_cpu_s": other, "other_share": other / (wall * cores) if wall else 0.0,
                "loadavg_end": Path("/proc/loadavg").read_text().split()[:3]}


def other_load_line(o: dict[str, Any]) -> str:
    warn = "  (WARNING: the machine was busy with other work; figures are noisy)" if o["other_share"] > 0.1 else ""
    return (f"   other load on the machine during this benchmark: {o['other_cpu_s']:.0f} CPU-s over "
            f"{o['wall_s']:.0f} s "
            f"({o['other_share']:.0%} of its cores){warn}")


def _busy() -> float:
    """Busy CPU seconds of all CPUs (user..steal, without idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def _ours() -> float:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def mbps(nbytes: float, seconds: float) -> float:
    return nbytes / 1e6 / seconds if seconds > 0 else float("inf")


def fmt_bytes(n: float) -> str:
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:.0f} B"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def write_results(work: Path, name: str, data: dict[str, Any]) -> Path:
    path = work / f"results-{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------------------- verification
class RawFile:
    """A raw image file, read like a disk handle (for same_content)."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb", buffering=0)
        self.size = os.fstat(self.f.fileno()).st_size

    def read(self, off: int, n: int) -> bytes:
        return os.pread(self.f.fileno(), n, off)

    def close(self) -> None:
        self.f.close()


def same_content(items: list[tuple[str, Any]]) -> None:
    """Every (label, reader with .size/.read/.close) holds the same bytes, or BenchError."""
    try:
        sizes = {label: r.size for label, r in items}
        if len(set(sizes.values())) != 1:
            raise BenchError(f"VERIFY FAILED: sizes differ: {sizes}")
        size, step = items[0][1].size, 8 * MiB
        for off in range(0, size, step):
            n = min(step, size - off)
            first = items[0][1].read(off, n)
            for label, r in items[1:]:
                if r.read(off, n) != first:
                    raise BenchError(f"VERIFY FAILED: {label} differs from {items[0][0]} in [{off}, {off + n})")
    finally:
        for _, r in items:
            r.close()


def disk(cluster_dir: Path, vm_id: str, snap_id: str | None = None) -> Any:
    from drivers.local import LocalDriver

    return LocalDriver(cluster_dir).open_disk(vm_id, "disk0", snap_id)


def live_disk_file(cluster_dir: Path, vm_id: str) -> Path:
    return cluster_dir / "vms" / vm_id / "disks" / "disk0.raw"


# ---------------------------------------------------------------------------- processes
def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
