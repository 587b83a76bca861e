"""`python -m bench libvirt`: abdr against virtnbdbackup 1.9 on one libvirt/QEMU domain
whose qcow2 disk holds the fixed 2 GiB image.

The domain is created through abdr's libvirt driver (a libvirt cluster directory under
/var/lib/libvirt/images, which QEMU's user can reach), the image imported through the
driver's write path (zero blocks stay unallocated), and the domain started with no OS: it
sits in SeaBIOS, so QEMU runs (virtnbdbackup's full and incremental backups need a running
domain: checkpoints are dirty bitmaps QEMU keeps) and the guest writes nothing. Both tools
back up the same states of that one disk:

  1. virtnbdbackup -l full, then abdr's full backup (`abdr backup-plan run --wait`)
  2. the domain is powered off, the same 5% change written through the driver
     (rewrite_fraction: the bytes `make_image.py mutate --seed 2` writes), powered on again
  3. virtnbdbackup -l inc, then abdr's incremental backup (`abdr backup-plan run --wait`)
  4. virtnbdrestore of the backup set into a scratch directory, and abdr's REBUILD restore
     of the incremental point as a new VM (`abdr restore --mode rebuild --wait`)

abdr runs through its real stack: a Temporal dev server and one worker process
(`worker.py --site default`: workflows, catalog and the site's activities), driven by the
`abdr` CLI as a user drives it. Every restore is compared with the mutated image (the
oracle: the bytes the disk must hold) by `qemu-img compare`, which reads the qcow2 itself.

What is measured per step: wall time of the command (spawn to exit); CPU seconds of
everything that did the tool's work, children included (virtnbdbackup: its process tree,
os.wait4; abdr: the CLI, the worker with its reaped qemu-nbd children and the dev server,
from /proc deltas) and, apart, the domain's QEMU process (virtnbdbackup reads through
QEMU's own NBD server; abdr reads frozen qcow2 files with its own qemu-nbd); peak RSS of the
tool's largest process (the worker's VmHWM, reset before each step); backup size (du)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench.common import (
    FRACTION,
    MUTATE_SEED,
    PY,
    SIZE,
    BenchError,
    Load,
    Measured,
    du,
    fmt_bytes,
    fresh_dir,
    images,
    log,
    machine,
    mbps,
    measure,
    other_load_line,
    run,
    table,
    verdict,
    warm,
    write_results,
)
from bench.stack import DevServer, WorkerProcess, one_worker_env

URI = "qemu:///system"
CLUSTER, REPO, PLAN, SITE = "kvm", "r1", "vnb", "default"
VM_NAME, RESTORED_NAME = "abdr-bench", "abdr-bench-restored"
ABDR = str(Path(PY).parent / "abdr")
STEPS = ("full", "incremental", "restore")


# ---------------------------------------------------------------------------- /proc
def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system seconds of a process and of its children it has reaped."""
    f = _stat(pid)
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _tree_rss(root: int) -> int:
    """RSS of a process and all its descendants (the worker's qemu-nbd servers), bytes."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            f = _stat(int(d.name))
        except (OSError, IndexError):
            continue
        kids.setdefault(int(f[1]), []).append(int(d.name))
        rss[int(d.name)] = int(f[21]) * page
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += kids.get(p, [])
    return total


class Meter:
    """CPU seconds of long-running processes over one step, the peak RSS (VmHWM, reset
    through /proc/PID/clear_refs) of `peak`, and the sampled peak of `peak`'s whole tree."""

    def __init__(self, cpu: dict[str, int], peak: int | None = None) -> None:
        self.pids, self.peak = cpu, peak
        self.tree_peak = 0
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        assert self.peak is not None
        while not self._halt.wait(0.05):
            self.tree_peak = max(self.tree_peak, _tree_rss(self.peak))

    def __enter__(self) -> Meter:
        if self.peak is not None:
            Path(f"/proc/{self.peak}/clear_refs").write_text("5")  # VmHWM := VmRSS
            self._thread.start()
        self.cpu0 = {k: cpu_s(p) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = {k: cpu_s(p) - self.cpu0[k] for k, p in self.pids.items()}
        if self.peak is not None:
            self._halt.set()
            self._thread.join()
            self.hwm = _status(self.peak, "VmHWM")


# ---------------------------------------------------------------------------- helpers
def qemu_pid(dom_name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{dom_name}.pid").read_text())


def disk_source(dom_uuid: str) -> Path:
    """The active file of a domain's first disk, as libvirt has it."""
    import libvirt

    conn = libvirt.open(URI)
    try:
        root = ET.fromstring(conn.lookupByUUIDString(dom_uuid).XMLDesc(0))
    finally:
        conn.close()
    src = root.find("./devices/disk/source")
    if src is None or not src.get("file"):
        raise BenchError(f"domain {dom_uuid} has no file-backed disk")
    return Path(src.get("file", ""))


def wait_released(path: Path, timeout_s: float = 60) -> float:
    """Seconds until no process has `path` on its command line any more: virtnbdrestore
    writes through a `qemu-nbd --fork` daemon that exits (and closes the image) only after
    virtnbdrestore has disconnected and exited itself."""
    t0 = time.perf_counter()
    needle = str(path).encode()
    while True:
        busy = False
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    busy = needle in (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if busy:
                    break
        if not busy:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout_s:
            raise BenchError(f"a process still has {path} open after {timeout_s:g} s")
        time.sleep(0.01)


def verify(label: str, image: Path, fmt: str, oracle: Path) -> None:
    """`qemu-img compare` (content, not allocation) of a restored image with the oracle."""
    p = subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", "raw", str(image), str(oracle)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise BenchError(f"VERIFY FAILED: {label} ({image}) differs from {oracle}: {(p.stdout + p.stderr).strip()}")


class Abdr:
    """The `abdr` CLI against the benchmark's stack; steps measured with the stack's CPU."""

    def __init__(self, env: dict[str, str], logs: Path, server: DevServer, worker: WorkerProcess) -> None:
        self.env, self.logs, self.server, self.worker = env, logs, server, worker

    def cli(self, *args: str) -> str:
        return run([ABDR, *args], env={**os.environ, **self.env, "COLUMNS": "250"}).stdout

    def step(self, name: str, *args: str, qemu: int | None = None) -> Measured:
        pids = {"worker": self.worker.proc.pid, "dev server": self.server.proc.pid, **({"qemu": qemu} if qemu else {})}
        with Meter(pids, peak=self.worker.proc.pid) as m:
            res = measure(name, [ABDR, *args, "--json"], self.logs, {**self.env, "COLUMNS": "250"})
        res.result = json.loads((self.logs / f"{name}.out").read_text())
        res.result["_meter"] = {"cpu_s": m.cpu, "worker_hwm": m.hwm, "worker_tree_peak": m.tree_peak}
        return res


async def activity_seconds(server: DevServer) -> dict[str, list[tuple[str, float]]]:
    """Where abdr's steps spent their time, from the workflows' histories: per workflow
    (`<type> <start>`), each activity's seconds from scheduled to completed, in order."""
    client = await server.connect()
    out: dict[str, list[tuple[str, float]]] = {}
    async for wf in client.list_workflows():
        names: dict[int, tuple[str, Any]] = {}
        acts: list[tuple[str, float]] = []
        async for e in client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history_events():
            if e.HasField("activity_task_scheduled_event_attributes"):
                names[e.event_id] = (e.activity_task_scheduled_event_attributes.activity_type.name, e.event_time)
            elif e.HasField("activity_task_completed_event_attributes"):
                name, t0 = names[e.activity_task_completed_event_attributes.scheduled_event_id]
                acts.append((name, e.event_time.ToDatetime().timestamp() - t0.ToDatetime().timestamp()))
        out[f"{wf.workflow_type} {wf.start_time.isoformat()}"] = acts
    return dict(sorted(out.items(), key=lambda kv: kv[0].split(" ", 1)[1]))


def _slowest(acts: dict[str, list[tuple[str, float]]], wf_type: str, index: int, n: int = 4) -> str:
    """The `n` slowest activities of the `index`-th workflow of a type, as text."""
    runs = [a for k, a in acts.items() if k.split(" ", 1)[0] == wf_type]
    if len(runs) <= index:
        return "?"
    return ", ".join(f"{name} {sec:.2f} s" for name, sec in sorted(runs[index], key=lambda x: -x[1])[:n])


def vnb_step(name: str, cmd: list[str], logs: Path, qemu: int) -> Measured:
    with Meter({"qemu": qemu}) as m:
        res = measure(name, cmd, logs)
    res.result = {"_meter": {"cpu_s": m.cpu}}
    return res


def tool_cpu(m: Measured, tool: str) -> tuple[float, float]:
    """(the tool's CPU seconds, QEMU's) of one step."""
    c = m.result["_meter"]["cpu_s"]
    own = m.cpu_user_s + m.cpu_sys_s
    if tool == "abdr":
        own += c["worker"] + c["dev server"]
    return own, c["qemu"]


# ---------------------------------------------------------------------------- the run
def _run(work: Path, img: Any) -> dict[str, Any]:
    from drivers.libvirt import LibvirtDriver
    from drivers.local.tools import import_image, rewrite_fraction
    from tests.hypervisor.bed import fresh_cluster_dir, remove_cluster_dir

    d = fresh_dir(work / "libvirt")
    logs, repo, vnb_out, vnb_restore = d / "logs", d / "repo", d / "vnb", d / "vnb-restore"
    logs.mkdir()
    cdir = fresh_cluster_dir()
    endpoint = f"{URI}#{cdir}"
    out: dict[str, Any] = {"cluster_dir": str(cdir)}
    server = DevServer(d / "temporal.db", logs / "temporal.log")
    worker: WorkerProcess | None = None
    try:
        import asyncio

        asyncio.run(server.connect())  # up and answering
        env = one_worker_env(d, server.address, SITE)
        worker = WorkerProcess("default", env, logs / "worker.log", "--site", SITE)
        abdr = Abdr(env, logs, server, worker)
        abdr.cli("cluster", "add", CLUSTER, "--site", SITE, "--driver", "libvirt", "--endpoint", URI,
                 "--path", str(cdir))
        abdr.cli("repository", "create", REPO, "--path", str(repo), "--site", SITE)

        log("libvirt: importing the image into a new VM through the driver")
        driver = LibvirtDriver(endpoint, CLUSTER)
        t = time.perf_counter()
        vm = import_image(driver, img.base, VM_NAME)
        out["import_s"] = time.perf_counter() - t
        import libvirt

        conn = libvirt.open(URI)
        dom_name = conn.lookupByUUIDString(vm.id).name()
        virt_type = ET.fromstring(conn.lookupByUUIDString(vm.id).XMLDesc(0)).get("type", "?")  # kvm or TCG's qemu
        conn.close()
        driver.power_on(vm.id)  # no OS: SeaBIOS finds nothing to boot and waits
        qemu = qemu_pid(dom_name)
        abdr.cli("backup-plan", "create", PLAN, "--vm", f"{CLUSTER}/{VM_NAME}", "-r", REPO,
                 "--schedule", "daily 03:00", "--retention", "count:5")
        out["warm_s"] = sum(warm(f) for f in sorted((cdir / "vms" / vm.id).glob("*.qcow2")))

        vnb = ["virtnbdbackup", "-U", URI, "-d", dom_name, "-o", str(vnb_out), "-n"]
        log("libvirt: full backups (virtnbdbackup -l full, abdr backup-plan run)")
        out["vnb_full"] = vnb_step("vnb-full", [*vnb, "-l", "full"], logs, qemu)
        out["vnb_size_full"] = du(vnb_out)
        out["abdr_full"] = abdr.step("abdr-full", "backup-plan", "run", PLAN, "--wait", qemu=qemu)
        out["abdr_size_full"] = du(repo)
        _check_run(out["abdr_full"], "FULL")

        log("libvirt: the 5% change (powered off, through the driver), powered on again")
        driver.power_off(vm.id)
        t = time.perf_counter()
        changed = rewrite_fraction(driver, vm.id, "disk0", FRACTION, MUTATE_SEED)
        out["change_s"] = time.perf_counter() - t
        out["changed_bytes"] = sum(e.length for e in changed)
        driver.power_on(vm.id)
        qemu = qemu_pid(dom_name)

        log("libvirt: incremental backups (virtnbdbackup -l inc, abdr backup-plan run)")
        out["vnb_incremental"] = vnb_step("vnb-inc", [*vnb, "-l", "inc"], logs, qemu)
        out["vnb_size_incremental"] = du(vnb_out)
        out["abdr_incremental"] = abdr.step("abdr-incr", "backup-plan", "run", PLAN, "--wait", qemu=qemu)
        out["abdr_size_incremental"] = du(repo)
        point = _check_run(out["abdr_incremental"], "INCREMENTAL")

        log("libvirt: restores (virtnbdrestore, abdr restore --mode rebuild)")
        out["vnb_restore"] = vnb_step("vnb-restore", ["virtnbdrestore", "-U", URI, "-i", str(vnb_out), "-o",
                                                      str(vnb_restore), "-n", "-L", str(logs / "virtnbdrestore.log")],
                                      logs, qemu)
        # the restore is done when its image is closed: counted in (it is milliseconds)
        out["vnb_restore_close_s"] = wait_released(vnb_restore)
        out["vnb_restore"].wall_s += out["vnb_restore_close_s"]
        restored = max((p for p in vnb_restore.iterdir() if p.is_file() and p.suffix not in (".xml", ".json")),
                       key=lambda p: p.stat().st_size)
        fmt = json.loads(run(["qemu-img", "info", "--output=json", str(restored)]).stdout)["format"]
        out["vnb_restore_file"] = {"name": restored.name, "format": fmt, **du(restored)}
        verify("virtnbdrestore", restored, fmt, img.mutated)
        out["abdr_restore"] = abdr.step("abdr-restore", "restore", point, "--mode", "rebuild", "--new-name",
                                        RESTORED_NAME, "--wait", qemu=qemu)
        new = disk_source(out["abdr_restore"].result["vm_id"])
        out["abdr_restore_file"] = {"name": new.name, **du(new)}
        verify("abdr restore", new, "qcow2", img.mutated)
        out["verified"] = True
        out["activities"] = asyncio.run(activity_seconds(server))
        out["versions"] = {"virtnbdbackup": run(["virtnbdbackup", "-V"]).stdout.strip(),
                           "libvirt": run(["virsh", "--version"]).stdout.strip(),
                           "qemu": run(["qemu-img", "--version"]).stdout.splitlines()[0], "virt_type": virt_type}
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
        remove_cluster_dir(endpoint)
    for big in (repo, vnb_out, vnb_restore):  # the logs stay (bench/out/libvirt/logs): where time went
        shutil.rmtree(big, ignore_errors=True)
    return out


def _check_run(m: Measured, want: str) -> str:
    r = m.result
    if r.get("result") != "SUCCESS" or len(r.get("vms", [])) != 1 or r["vms"][0].get("type") != want:
        raise BenchError(f"{m.name}: expected one {want} point, got {json.dumps(r)[:2000]}")
    return str(r["vms"][0]["point_id"])


# ---------------------------------------------------------------------------- output
def summarise(o: dict[str, Any], size: int) -> dict[str, Any]:
    s: dict[str, Any] = {"image_bytes": size, "tools": {}}
    for tool, pre in (("abdr", "abdr"), ("virtnbdbackup", "vnb")):
        t: dict[str, Any] = {}
        for step in STEPS:
            m: Measured = o[f"{pre}_{step}"]
            own, qemu = tool_cpu(m, tool)
            rss = m.result["_meter"]["worker_hwm"] if tool == "abdr" else m.max_rss
            t[step] = {"wall_s": m.wall_s, "mb_per_s": mbps(size, m.wall_s), "cpu_s": own, "qemu_cpu_s": qemu,
                       "max_rss": max(rss, m.max_rss)}
            if tool == "abdr":
                t[step]["worker_tree_peak"] = m.result["_meter"]["worker_tree_peak"]
        t["size_full"] = o[f"{pre}_size_full"]["du"]
        t["incremental_growth"] = o[f"{pre}_size_incremental"]["du"] - o[f"{pre}_size_full"]["du"]
        s["tools"][tool] = t
    a, v = s["tools"]["abdr"], s["tools"]["virtnbdbackup"]
    ratios = {
        "full_throughput": (a["full"]["mb_per_s"] / v["full"]["mb_per_s"], ">= 1.5", lambda x: x >= 1.5),
        "size_after_full": (a["size_full"] / v["size_full"], "< 1", lambda x: x < 1),
        "incremental_time": (a["incremental"]["wall_s"] / v["incremental"]["wall_s"], "<= 1", lambda x: x <= 1),
        "restore_throughput": (a["restore"]["mb_per_s"] / v["restore"]["mb_per_s"], ">= 2", lambda x: x >= 2),
        "incremental_growth": (a["incremental_growth"] / v["incremental_growth"], "(none)", None),
    }
    s["ratios"] = {k: {"value": x, "target": tg, "met": f(x) if f else None} for k, (x, tg, f) in ratios.items()}
    return s


def report(s: dict[str, Any], o: dict[str, Any]) -> str:
    size = s["image_bytes"]
    a, v = s["tools"]["abdr"], s["tools"]["virtnbdbackup"]
    full, inc = o["abdr_full"].result["vms"][0]["disks"][0], o["abdr_incremental"].result["vms"][0]["disks"][0]
    ver = o["versions"]
    lines = [
        f"== libvirt: abdr vs virtnbdbackup on one QEMU domain, {fmt_bytes(size)} qcow2 disk "
        "(make_image.py --seed 1), 5% change (--seed 2)",
        f"   {ver['virtnbdbackup']}, libvirt {ver['libvirt']}, {ver['qemu']}, virt type {ver['virt_type']};"
        " domain running (SeaBIOS, no OS)",
        "   abdr: `abdr backup-plan run --wait` / `abdr restore --mode rebuild --wait` through a dev server +",
        "   one worker process; virtnbdbackup defaults (stream format, no compression); one run each.",
        "   CPU = the tool's processes, children included (abdr: CLI + worker + dev server); QEMU's apart.",
        "",
    ]
    rows = []
    labels = {"full": "full backup", "incremental": "incremental", "restore": "restore"}
    for name, t in (("abdr", a), ("virtnbdbackup", v)):
        for step in STEPS:
            x = t[step]
            extra = {"full": f"backup {fmt_bytes(t['size_full'])}",
                     "incremental": f"growth {fmt_bytes(t['incremental_growth'])}",
                     "restore": "verified byte for byte"}[step]
            rows.append([name, labels[step], f"{x['wall_s']:.2f}", f"{x['mb_per_s']:.0f}", f"{x['cpu_s']:.1f}",
                         f"{x['qemu_cpu_s']:.1f}", fmt_bytes(x["max_rss"]), extra])
    lines.append(table(["tool", "step", "wall s", "MB/s", "CPU s", "QEMU CPU s", "peak RSS", "size (du)"], rows))
    lines += ["",
              f"   abdr full read {fmt_bytes(full['read_bytes'])} (allocated clusters), stored "
              f"{fmt_bytes(full['new_bytes'])}; incremental ({fmt_bytes(o['changed_bytes'])} changed): read "
              f"{fmt_bytes(inc['read_bytes'])}, stored {fmt_bytes(inc['new_bytes'])}",
              "   abdr's slowest activities (workflow histories, scheduled -> completed): full: "
              f"{_slowest(o['activities'], 'VMBackup', 0)}; incremental: {_slowest(o['activities'], 'VMBackup', 1)}; "
              f"restore: {_slowest(o['activities'], 'Restore', 0)}",
              f"   abdr worker + its qemu-nbd, sampled peak: full {fmt_bytes(a['full']['worker_tree_peak'])}, "
              f"incremental {fmt_bytes(a['incremental']['worker_tree_peak'])}, restore "
              f"{fmt_bytes(a['restore']['worker_tree_peak'])}",
              f"   restored files: virtnbdrestore {o['vnb_restore_file']['format']} "
              f"{fmt_bytes(o['vnb_restore_file']['du'])} (du), abdr qcow2 {fmt_bytes(o['abdr_restore_file']['du'])}",
              f"   setup, not compared: import through the driver {o['import_s']:.1f} s, 5% change through the "
              f"driver {o['change_s']:.1f} s; virtnbdrestore's qemu-nbd closed the image "
              f"{o['vnb_restore_close_s']:.2f} s after virtnbdrestore exited (counted in its restore)", ""]
    rows = []
    for k, label in (("full_throughput", "full backup throughput abdr/virtnbdbackup"),
                     ("size_after_full", "backup size after full abdr/virtnbdbackup"),
                     ("incremental_time", "incremental time abdr/virtnbdbackup"),
                     ("restore_throughput", "restore throughput abdr/virtnbdbackup"),
                     ("incremental_growth", "incremental growth abdr/virtnbdbackup")):
        r = s["ratios"][k]
        rows.append([label, f"{r['value']:.3f}", r["target"], "" if r["met"] is None else verdict(r["met"])])
    lines.append(table(["ratio", "measured", "target", ""], rows))
    return "\n".join(lines)


def bench_libvirt(work: Path, size: str = SIZE) -> dict[str, Any]:
    for tool in ("virtnbdbackup", "virtnbdrestore", "qemu-img", "virsh"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not installed: run `bash scripts/install-bench-tools.sh` "
                             "and `bash scripts/ensure-hypervisor.sh .venv`")
    img = images(work, size)
    load = Load()
    o = _run(work, img)
    s = summarise(o, img.size)
    text = report(s, o)
    other = load.report()
    text += "\n" + other_load_line(other)
    data = {"benchmark": "libvirt", "machine": machine(), "other_load": other, "summary": s,
            "runs": {k: (x.as_dict() if isinstance(x, Measured) else x) for k, x in o.items()}, "text": text}
    path = write_results(work, "libvirt" if size == SIZE else f"libvirt-{size}", data)
    print(text + f"\n   results: {path}\n", flush=True)
    return data
