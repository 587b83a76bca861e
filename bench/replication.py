"""`python -m bench replication`: replication's data path against rsync, failover latency
of 1 and of N VMs at once, and the bytes a failback moves.

1. Incremental pull between two site workers on loopback: the source site's transport
   server (real uvicorn, its own process) serves a local cluster holding the imported
   2 GiB image; the target site's pull (ReplicationActivities.pull_extents, called in a
   Temporal ActivityEnvironment in its own process) seeds a replica, then pulls the 5%
   change. Against `rsync --inplace --no-whole-file` of the same change onto a copy of the
   pre-change image.
2. and 3. run through the whole stack: failover latency of 1 and of N VMs, failback of a
   2 GiB VM (bench/stack.py).
Every replica and original is compared byte for byte with what it must equal."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FRACTION,
    MUTATE_SEED,
    PY,
    ROOT,
    TOKEN,
    BenchError,
    Load,
    Measured,
    MiB,
    RawFile,
    abdr_step,
    copy_file,
    disk,
    fmt_bytes,
    fresh_dir,
    images,
    live_disk_file,
    log,
    machine,
    measure,
    other_load_line,
    same_content,
    stop,
    table,
    verdict,
    warm,
    write_results,
)
from bench.stack import SMALL, stack_bench


# ---------------------------------------------------------------------------- 1. pull vs rsync
def _pull_args(url: str, target_dir: Path, inp: dict[str, Any]) -> dict[str, Any]:
    return {"sites": {"a": url}, "clusters": {"cb": ["b", str(target_dir)]}, "local_site": "b", "token": TOKEN,
            "input": inp}


def start_transport(cluster_dir: Path, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    url_file = logs / "transport.url"
    url_file.unlink(missing_ok=True)
    args = {"clusters": {"ca": ["a", str(cluster_dir)]}, "site": "a", "token": TOKEN, "url_file": str(url_file)}
    proc = subprocess.Popen([PY, "-m", "bench.steps", "serve", json.dumps(args), "-"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(logs / "transport.err", "ab"))
    deadline = time.monotonic() + 30
    while not url_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BenchError(f"the transport server did not start: {(logs / 'transport.err').read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, url_file.read_text()


def pull_vs_rsync(work: Path, img: Any) -> dict[str, Any]:
    d = fresh_dir(work / "replication" / "pair")
    logs, ca, cb = d / "logs", d / "ca", d / "cb"
    out: dict[str, Any] = {}
    log("replication 1/3: source VM from the image, transport server, seed")
    src = abdr_step("import_vm", {"cluster_dir": str(ca), "image": str(img.base), "name": "src"}, logs).result["vm_id"]
    s1 = abdr_step("snapshot", {"cluster_dir": str(ca), "vm_id": src, "name": "rep-1"}, logs).result["snap_id"]
    rep = abdr_step("create_vm", {"cluster_dir": str(cb), "source_cluster_dir": str(ca), "source_vm_id": src,
                                  "name": "src-replica"}, logs).result["vm_id"]
    server, url = start_transport(ca, logs)
    try:
        seed = abdr_step("pull", _pull_args(url, cb, {
            "remote_site": "a", "remote": {"cluster": "ca", "vm_id": src, "snapshot_id": s1},
            "local": {"cluster": "cb", "vm_id": rep}}), logs, tag="pull-seed")
        out["seed"] = seed
        # the replica point the Replicate workflow takes: later writes pay copy-on-write
        abdr_step("snapshot", {"cluster_dir": str(cb), "vm_id": rep, "name": "rp-1"}, logs)
        out["change"] = abdr_step("rewrite", {"cluster_dir": str(ca), "vm_id": src, "fraction": FRACTION,
                                              "seed": MUTATE_SEED}, logs)
        s2 = abdr_step("snapshot", {"cluster_dir": str(ca), "vm_id": src, "name": "rep-2"}, logs).result["snap_id"]
        out["warm_s"] = warm(live_disk_file(ca, src))
        log("replication 1/3: incremental pull")
        out["incremental"] = abdr_step("pull", _pull_args(url, cb, {
            "remote_site": "a", "remote": {"cluster": "ca", "vm_id": src, "snapshot_id": s2}, "remote_base": s1,
            "local": {"cluster": "cb", "vm_id": rep}}), logs, tag="pull-incremental")
    finally:
        stop(server)
    same_content([("source@rep-2", disk(ca, src, s2)), ("replica", disk(cb, rep)),
                  ("mutated image", RawFile(img.mutated))])
    out["verified"] = True

    log("replication 1/3: rsync --inplace --no-whole-file")
    r = fresh_dir(d / "rsync")
    dst = r / "disk.raw"
    copy_file(img.base, dst)
    warm(img.mutated)
    warm(dst)
    m = measure("rsync", ["rsync", "--inplace", "--no-whole-file", "--stats", str(img.mutated), str(dst)], logs)
    stats = (logs / "rsync.out").read_text()
    m.result = {k: _rsync_stat(stats, k) for k in ("Literal data", "Matched data", "Total bytes sent",
                                                     "Total bytes received")}
    same_content([("rsync destination", RawFile(dst)), ("mutated image", RawFile(img.mutated))])
    out["rsync"] = m
    shutil.rmtree(d)
    return out


def _rsync_stat(text: str, key: str) -> int | None:
    m = re.search(rf"^{key}: ([\d,]+)", text, re.M)
    return int(m.group(1).replace(",", "")) if m else None


# ---------------------------------------------------------------------------- report
def report(p: dict[str, Any], s: dict[str, Any], nvms: int, size: int) -> tuple[str, dict[str, Any]]:
    seed, inc, rs = p["seed"], p["incremental"], p["rsync"]
    ratio = inc.wall_s / rs.wall_s
    ratio_in = inc.result["activity_s"] / rs.wall_s
    summary = {
        "incremental_pull_s": inc.wall_s, "incremental_pull_activity_s": inc.result["activity_s"],
        "rsync_s": rs.wall_s, "ratio_abdr_over_rsync": ratio, "ratio_activity_over_rsync": ratio_in,
        "target": "<= 1/10", "met": ratio <= 0.1, "met_activity_only": ratio_in <= 0.1,
    }
    lines = [f"== replication: {fmt_bytes(size)} image, 5% change "
             "(rewrite_fraction seed 2 == make_image.py mutate seed 2)",
             "   every step a child process (wall = spawn to exit, RSS = os.wait4); source disk and rsync's files",
             "   read once before the measured step (warm page cache for both).", ""]
    rows = [
        ["abdr seed pull (allocated extents)", f"{seed.wall_s:.2f}", f"{seed.result['activity_s']:.2f}",
         f"{seed.result['moved_bytes'] / 1e6 / seed.result['activity_s']:.0f}",
         fmt_bytes(seed.result["moved_bytes"]), fmt_bytes(seed.result["wire_bytes"]), fmt_bytes(seed.max_rss)],
        ["abdr incremental pull (changed extents)", f"{inc.wall_s:.2f}", f"{inc.result['activity_s']:.2f}",
         f"{inc.result['moved_bytes'] / 1e6 / inc.result['activity_s']:.0f}",
         fmt_bytes(inc.result["moved_bytes"]), fmt_bytes(inc.result["wire_bytes"]), fmt_bytes(inc.max_rss)],
        ["rsync --inplace --no-whole-file", f"{rs.wall_s:.2f}", "-", "-", fmt_bytes(rs.result["Literal data"] or 0),
         fmt_bytes((rs.result["Total bytes sent"] or 0) + (rs.result["Total bytes received"] or 0)),
         fmt_bytes(rs.max_rss)],
    ]
    lines.append(table(["step", "wall s", "activity s", "moved MB/s", "data moved", "on the wire", "peak RSS"], rows))
    lines.append("   wall = the step's process from spawn to exit (includes ~1 s of interpreter start and imports for "
                 "a pull);\n   activity = pull_extents itself, what a running site worker spends")
    lines += ["", table(["ratio", "measured", "target", ""], [
        ["incremental pull / rsync (process wall)", f"{ratio:.3f} (1/{1 / ratio:.1f})", "<= 1/10",
         verdict(ratio <= 0.1)],
        ["incremental pull / rsync (activity only)", f"{ratio_in:.3f} (1/{1 / ratio_in:.1f})", "<= 1/10",
         verdict(ratio_in <= 0.1)],
    ]), "", "   replica == source snapshot == mutated image, rsync destination == mutated image: "
        "verified byte for byte",
        "", f"== failover (dev server + orchestration worker + 2 site workers, separate processes; {nvms} VMs of "
        f"{SMALL // MiB} MiB,", f"   CROSS_SITE plan; one replication run took {s['fleet_replication_s']:.1f} s, "
        f"{s['fleet_max_jobs']} VMs at a time; source_shutdown POWEROFF)", ""]
    rows = []
    for key in ("failover_1", f"failover_{nvms}"):
        f = s[key]
        r, c = f["to_running_s"], f["to_result_s"]
        rows.append([f"{f['vms']} VM(s) at once", f"{r['min']:.2f} / {r['median']:.2f} / {r['max']:.2f}",
                     f"{f['total_to_all_running_s']:.2f}", f"{c['min']:.2f} / {c['median']:.2f} / {c['max']:.2f}",
                     f"{f['cpu_busy']:.0%}"])
    lines.append(table(["failover", "request->RUNNING s min/median/max", "total s", "request->result s min/med/max",
                        "CPU busy"], rows))
    cpu = s[f"failover_{nvms}"]["cpu_s_by_process"]
    lines.append(f"   CPU seconds during the {nvms} failovers: " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
    fb = s["failback"]
    d = fb["details"]
    lines += ["", f"== failback of the {fmt_bytes(size)} VM through the stack (seed {s['big_seed_s']:.1f} s, failover "
              f"{s['big_failover_s']:.1f} s, {fmt_bytes(s['big_changed_bytes'])} rewritten on the replica)", "",
              table(["failback", "seconds", "moved", "disk", "moved/disk", "pre-sync", "final sync", "wire"], [[
                  "request->result", f"{s['failback_s']:.2f}", fmt_bytes(fb["moved_bytes"]),
                  fmt_bytes(fb["disk_bytes"]),
                  f"{fb['moved_bytes'] / fb['disk_bytes']:.2%}", fmt_bytes(d["pre_sync_bytes"]),
                  fmt_bytes(d["final_sync_bytes"]), fmt_bytes(d["wire_bytes"])]]),
              "   original == replica == mutated image after failback: verified byte for byte"]
    return "\n".join(lines), summary


def bench_replication(work: Path, vms: int = 50) -> dict[str, Any]:
    if shutil.which("rsync") is None:
        raise BenchError("rsync is not installed: run `bash scripts/install-bench-tools.sh`")
    img = images(work)
    load = Load()
    pair = pull_vs_rsync(work, img)
    stack = asyncio.run(stack_bench(work, img, vms))
    text, summary = report(pair, stack, vms, img.size)
    other = load.report()
    text += "\n" + other_load_line(other)
    data = {"benchmark": "replication", "machine": machine(), "other_load": other, "summary": summary,
            "pair": {k: (v.as_dict() if isinstance(v, Measured) else v) for k, v in pair.items()},
            "stack": stack, "text": text}
    path = write_results(work, "replication", data)
    print(text + f"\n   results: {path}\n", flush=True)
    return data
