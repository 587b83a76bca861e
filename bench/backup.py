"""`python -m bench backup`: abdr's data plane against restic 0.14 on the fixed 2 GiB image.

abdr:   import the image into a local VM -> full backup (snapshot, allocated extents) -> the
        same 5% change through the driver (rewrite_fraction: CBT knows it) -> incremental
        backup (changed extents since the first snapshot) -> restore to a new raw file.
restic: init -> backup of the raw image -> make_image.py mutate of that copy -> backup ->
        restore latest.
Every restore is compared byte for byte with the mutated image; a difference aborts the run.
Every measured step is a child process: wall seconds from spawn to exit, peak RSS from
os.wait4. Repeated `repeat` times (fresh VM and repositories each time); medians reported."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import (
    FRACTION,
    MAKE_IMAGE,
    MUTATE_SEED,
    PY,
    BenchError,
    Load,
    Measured,
    MiB,
    abdr_step,
    copy_file,
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
    same_bytes,
    table,
    verdict,
    warm,
    write_results,
)

RSS_LIMIT = 256 * MiB
# ext4 skips inodes freed in the last 60-300 s when it allocates new ones, at a kernel cost
# that showed as 24% of a full backup's CPU samples: a run started sooner than this after
# the previous run deleted its repositories doubles abdr's kernel time (file per chunk).
SETTLE_S = 300
RESTIC_PASSWORD = "abdr-bench-not-a-secret"


def run_abdr(work: Path, img: Any, rep: int) -> dict[str, Any]:
    d = fresh_dir(work / "backup" / f"abdr-{rep}")
    logs, cluster, repo = d / "logs", str(d / "cluster"), str(d / "repo")
    out: dict[str, Any] = {}
    imp = abdr_step("import_vm", {"cluster_dir": cluster, "image": str(img.base), "name": "bench"}, logs)
    vm = imp.result["vm_id"]
    out["import"] = imp
    out["init"] = abdr_step("init_repo", {"repo": repo}, logs)
    out["warm_s"] = warm(Path(cluster) / "vms" / vm / "disks" / "disk0.raw")  # what the backup reads
    full = abdr_step("full_backup", {"cluster_dir": cluster, "repo": repo, "vm_id": vm, "snap_name": "bench-full"},
                     logs)
    out["full"], out["size_full"] = full, du(Path(repo))
    out["change"] = abdr_step("rewrite", {"cluster_dir": cluster, "vm_id": vm, "fraction": FRACTION,
                                          "seed": MUTATE_SEED}, logs)
    # The driver writes the change around the page cache (as a guest's QEMU with cache=none
    # would); restic's copy is changed through it. Read it once, so both incrementals start warm.
    out["warm_incremental_s"] = warm(Path(cluster) / "vms" / vm / "disks" / "disk0.raw")
    incr = abdr_step("incremental_backup", {"cluster_dir": cluster, "repo": repo, "vm_id": vm,
                                            "snap_name": "bench-incr", "base_snap": full.result["snap_id"],
                                            "base_point": full.result["point_id"]}, logs)
    out["incremental"], out["size_incremental"] = incr, du(Path(repo))
    restored = d / "restored.raw"
    out["restore"] = abdr_step("restore", {"repo": repo, "point_id": incr.result["point_id"], "out": str(restored)},
                               logs)
    same_bytes(restored, img.mutated)  # raises on the first differing byte
    out["verified"] = True
    restored.unlink()  # big files go now; the repository's many small ones at the end (see _cleanup)
    shutil.rmtree(cluster)
    return out


def run_restic(work: Path, img: Any, rep: int) -> dict[str, Any]:
    d = fresh_dir(work / "backup" / f"restic-{rep}").absolute()
    logs, src = d / "logs", d / "src" / "disk.raw"
    env = {"RESTIC_PASSWORD": RESTIC_PASSWORD, "RESTIC_REPOSITORY": str(d / "repo"),
           "RESTIC_CACHE_DIR": str(d / "cache")}
    src.parent.mkdir()
    copy_file(img.base, src)
    out: dict[str, Any] = {}
    out["init"] = measure("restic-init", ["restic", "init"], logs, env)
    out["open"] = measure("restic-open", ["restic", "cat", "config"], logs, env)  # the fixed cost of any command
    out["warm_s"] = warm(src)
    out["full"] = measure("restic-full", ["restic", "backup", "-q", str(src)], logs, env)
    out["size_full"] = du(d / "repo")
    run([PY, str(MAKE_IMAGE), "mutate", str(src), "--fraction", f"{FRACTION:g}", "--seed", str(MUTATE_SEED),
         "--cbt", str(d / "changed.json")])
    out["incremental"] = measure("restic-incremental", ["restic", "backup", "-q", str(src)], logs, env)
    out["size_incremental"] = du(d / "repo")
    out["restore"] = measure("restic-restore", ["restic", "restore", "-q", "latest", "--target", str(d / "restore")],
                             logs, env)
    same_bytes(d / "restore" / src.relative_to("/"), img.mutated)
    out["verified"] = True
    shutil.rmtree(d / "restore")
    src.unlink()
    out["version"] = run(["restic", "version"]).stdout.strip()
    if not out["version"].startswith("restic 0.14."):
        log(f"WARNING: the comparison is specified against restic 0.14, this is {out['version']}")
    out["repo_config"] = run(["restic", "cat", "config"], env={**os.environ, **env}).stdout
    return out


STEPS = ("full", "incremental", "restore")


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarise(abdr: list[dict[str, Any]], restic: list[dict[str, Any]], size: int) -> dict[str, Any]:
    def wall(runs: list[dict[str, Any]], step: str) -> float:
        return _median([r[step].wall_s for r in runs])

    def work(runs: list[dict[str, Any]], step: str) -> float:
        return _median([r[step].result["work_s"] for r in runs])

    def rss(runs: list[dict[str, Any]], step: str) -> int:
        return max(r[step].max_rss for r in runs)

    def size_of(runs: list[dict[str, Any]], key: str) -> int:
        return int(_median([r[key]["du"] for r in runs]))

    s: dict[str, Any] = {"image_bytes": size, "tools": {}}
    for name, runs in (("abdr", abdr), ("restic", restic)):
        t: dict[str, Any] = {}
        for step in STEPS:
            w = wall(runs, step)
            t[step] = {"wall_s": w, "wall_s_all": [r[step].wall_s for r in runs], "max_rss": rss(runs, step),
                       "cpu_s": _median([r[step].cpu_user_s + r[step].cpu_sys_s for r in runs]),
                       "cpu_user_s": _median([r[step].cpu_user_s for r in runs]),
                       "cpu_sys_s": _median([r[step].cpu_sys_s for r in runs])}
            t[step]["mb_per_s"] = mbps(size, w)  # image size / s (for the incremental: effective)
            if name == "abdr":
                t[step]["in_process_s"] = work(runs, step)
        full_size = size_of(runs, "size_full")
        t["repo_after_full"] = full_size
        t["repo_after_full_apparent"] = int(_median([r["size_full"]["apparent"] for r in runs]))
        t["incremental_growth"] = int(_median([r["size_incremental"]["du"] - r["size_full"]["du"] for r in runs]))
        # every measured step of the tool, setup included (import, rewrite_fraction, init)
        t["peak_rss"] = max(m.max_rss for r in runs for m in r.values() if isinstance(m, Measured))
        s["tools"][name] = t
    a, r = s["tools"]["abdr"], s["tools"]["restic"]
    s["ratios"] = {
        "full_throughput": {"value": a["full"]["mb_per_s"] / r["full"]["mb_per_s"], "target": ">= 2"},
        "incremental_time": {"value": a["incremental"]["wall_s"] / r["incremental"]["wall_s"], "target": "<= 1/20"},
        "restore_throughput": {"value": a["restore"]["mb_per_s"] / r["restore"]["mb_per_s"], "target": ">= 2"},
        "repo_size_after_full": {"value": a["repo_after_full"] / r["repo_after_full"], "target": "<= 1"},
        "incremental_growth": {"value": a["incremental_growth"] / r["incremental_growth"], "target": "<= 1/4"},
    }
    met = {"full_throughput": lambda v: v >= 2, "incremental_time": lambda v: v <= 1 / 20,
           "restore_throughput": lambda v: v >= 2, "repo_size_after_full": lambda v: v <= 1,
           "incremental_growth": lambda v: v <= 1 / 4}
    for k, f in met.items():
        s["ratios"][k]["met"] = f(s["ratios"][k]["value"])
    s["ratios"]["abdr_peak_rss"] = {"value": a["peak_rss"], "target": "< 256 MiB", "met": a["peak_rss"] < RSS_LIMIT}
    return s


def _med(runs: list[dict[str, Any]], step: str) -> float:
    return _median([r[step].wall_s for r in runs])


def report(s: dict[str, Any], abdr: list[dict[str, Any]], restic: list[dict[str, Any]], repeat: int) -> str:
    size = s["image_bytes"]
    a, r = s["tools"]["abdr"], s["tools"]["restic"]
    inc = abdr[0]["incremental"].result["disks"][0]
    full = abdr[0]["full"].result["disks"][0]
    lines = [
        f"== backup: abdr vs restic, {fmt_bytes(size)} image (make_image.py --seed 1), 5% change (--seed 2)",
        f"   median of {repeat} run(s); every step a child process (wall = spawn to exit, RSS = os.wait4 ru_maxrss).",
        "   Page cache: not dropped (not portable). Each tool's source was read once right before its full",
        "   backup, so both start warm; restores read repositories the backups just wrote (warm for both).",
        "   abdr repository defaults (128 KiB chunks, zstd 1, syncfs); restic defaults (repo v2, zstd auto):",
        f"   {restic[0]['version']}",
        "",
    ]
    rows = []
    labels = {"full": "full backup", "incremental": "incremental", "restore": "restore"}
    for name, t in (("abdr", a), ("restic", r)):
        for step in STEPS:
            ws = t[step]["wall_s_all"]
            spread = f" ({min(ws):.2f}-{max(ws):.2f})" if len(ws) > 1 else ""
            extra = {"full": f"repo {fmt_bytes(t['repo_after_full'])}",
                     "incremental": f"growth {fmt_bytes(t['incremental_growth'])}",
                     "restore": "verified byte for byte"}[step]
            rows.append([name, labels[step], f"{t[step]['wall_s']:.2f}{spread}", f"{t[step]['mb_per_s']:.0f}",
                         f"{t[step]['cpu_user_s']:.1f} + {t[step]['cpu_sys_s']:.1f}", fmt_bytes(t[step]["max_rss"]),
                         extra])
    lines.append(table(["tool", "step", "wall s median (min-max)", "MB/s", "CPU s user + sys", "peak RSS",
                        "repository (du)"], rows))
    lines += ["",
              f"   abdr in-process time (excl. interpreter start): full {a['full']['in_process_s']:.2f} s, incremental "
              f"{a['incremental']['in_process_s']:.2f} s, restore {a['restore']['in_process_s']:.2f} s",
              f"   setup, not compared: abdr import {_med(abdr, 'import'):.2f} s, rewrite_fraction "
              f"{_med(abdr, 'change'):.2f} s, repository init {_med(abdr, 'init'):.2f} s; restic init "
              f"{_med(restic, 'init'):.2f} s; any restic command spends {_med(restic, 'open'):.2f} s opening the "
              "repository "
              "(`restic cat config`: scrypt key derivation), included in its figures",
              "   restores: abdr writes the non-zero chunks of a sparse file; restic 0.14 writes every byte",
              f"   abdr full read {fmt_bytes(full['read_bytes'])} (allocated extents), stored "
              f"{fmt_bytes(full['new_bytes'])}"
              f" in {full['new_chunks']} chunks; incremental: {fmt_bytes(inc['extent_bytes'])} changed, read "
              f"{fmt_bytes(inc['read_bytes'])} (whole 128 KiB chunks), stored {fmt_bytes(inc['new_bytes'])}", ""]
    rows = []
    for k, label in (("full_throughput", "full backup throughput abdr/restic"),
                     ("incremental_time", "incremental time abdr/restic"),
                     ("restore_throughput", "restore throughput abdr/restic"),
                     ("repo_size_after_full", "repository size after full abdr/restic"),
                     ("incremental_growth", "incremental growth abdr/restic")):
        v = s["ratios"][k]
        shown = f"{v['value']:.3f}" + (f" (1/{1 / v['value']:.1f})" if v["value"] < 1 else "")
        rows.append([label, shown, v["target"], verdict(v["met"])])
    v = s["ratios"]["abdr_peak_rss"]
    rows.append(["abdr peak RSS (any abdr step)", fmt_bytes(v["value"]), v["target"], verdict(v["met"])])
    lines.append(table(["ratio", "measured", "target", ""], rows))
    return "\n".join(lines)


def bench_backup(work: Path, repeat: int = 5) -> dict[str, Any]:
    if shutil.which("restic") is None:
        raise BenchError("restic is not installed: run `bash scripts/install-bench-tools.sh`")
    img = images(work)
    marker = work / ".backup-cleanup"
    since = time.time() - marker.stat().st_mtime if marker.exists() else None
    settle = ""
    if since is not None and since < SETTLE_S:
        settle = (f"   WARNING: started {since:.0f} s after the previous run deleted its repositories (< {SETTLE_S} s):"
                  "\n   ext4 is still avoiding those inodes, which inflates abdr's kernel time; rerun later")
        log(settle.strip())
    load = Load()
    abdr, restic = [], []
    try:
        for rep in range(repeat):
            log(f"backup run {rep + 1}/{repeat}: abdr")
            abdr.append(run_abdr(work, img, rep))
            log(f"backup run {rep + 1}/{repeat}: restic")
            restic.append(run_restic(work, img, rep))
    finally:
        # Repositories are deleted only now: creating thousands of files right after deleting
        # thousands is several times costlier in the kernel on ext4 (its inode allocator skips
        # recently deleted inodes, `recently_deleted()`), which would charge this benchmark's
        # own cleanup to the next run's file-per-chunk repository.
        shutil.rmtree(work / "backup", ignore_errors=True)
        marker.touch()
    s = summarise(abdr, restic, img.size)
    text = report(s, abdr, restic, repeat)
    other = load.report()
    text += "\n" + other_load_line(other) + ("\n" + settle if settle else "")
    data = {"benchmark": "backup", "machine": machine(), "other_load": other, "repeat": repeat, "summary": s,
            "seconds_since_previous_cleanup": since,
            "runs": {"abdr": [_plain(x) for x in abdr], "restic": [_plain(x) for x in restic]},
            "restic_version": restic[0]["version"], "text": text}
    path = write_results(work, "backup", data)
    print(text + f"\n   results: {path}\n", flush=True)
    return data


def _plain(run_: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.as_dict() if isinstance(v, Measured) else v) for k, v in run_.items()}
