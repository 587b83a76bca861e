"""`python -m bench userpath`: the user-level path, `abdr` as a user runs it, against restic in
the same run, on the fixed 2 GiB image (`--image-size` other than 2GiB: a trial, not the figures).

abdr:   a Temporal dev server and one worker process (`worker.py --site default`: workflows,
        catalog and the site's activities), a local cluster holding the image (imported
        through the driver), a backup plan over it; then, each a child process of the real
        `abdr` CLI: `backup-plan run --wait` (full), the 5% change through the driver
        (rewrite_fraction: CBT knows it), `backup-plan run --wait` (incremental), `restore
        --mode rebuild --wait` of the incremental point as a new VM.
restic: bench/backup.py's run (init, backup, make_image.py mutate, backup, restore latest).
Both restores are compared byte for byte with the mutated image.

Each abdr command is split, from its workflow's own record, into: spawn -> workflow started
(interpreter, imports, connect, the admin calls before the start), started -> closed (the
workflow: worker pickup, activities), closed -> exit (result read, output, exit)."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.backup import run_restic
from bench.common import (
    FRACTION,
    MUTATE_SEED,
    SIZE,
    BenchError,
    Load,
    Measured,
    RawFile,
    abdr_step,
    disk,
    fmt_bytes,
    fresh_dir,
    images,
    log,
    machine,
    measure,
    other_load_line,
    same_content,
    table,
    verdict,
    warm,
    write_results,
)
from bench.libvirt import ABDR, Abdr, _check_run, _slowest, activity_seconds
from bench.stack import DevServer, WorkerProcess, one_worker_env

CLUSTER, REPO, PLAN, SITE, VM_NAME = "c1", "r1", "bench", "default", "bench"
HELP_RUNS = 5  # `abdr --help` runs, median reported: the CLI's fixed start-up cost
# The goals (issue 13): a user's incremental at most 1/10 of restic's time, restore at least 2x.
INCREMENTAL_GOAL, RESTORE_GOAL = 1 / 10, 2.0


async def _phases(server: DevServer, workflow_id: str, spawned: float, exited: float) -> dict[str, float]:
    """A command's time split at its workflow's start and close (the server's clock, which
    is this machine's), plus the worker's pickup (started -> first workflow task started)."""
    client = await server.connect()
    handle = client.get_workflow_handle(workflow_id)
    d = await handle.describe()
    if d.close_time is None:
        raise BenchError(f"workflow {workflow_id} has not closed after its `--wait` command exited")
    start, close = d.start_time.timestamp(), d.close_time.timestamp()
    pickup = None
    async for e in handle.fetch_history_events():
        if e.HasField("workflow_task_started_event_attributes"):
            pickup = e.event_time.ToDatetime(tzinfo=timezone.utc).timestamp() - start
            break
    return {"to_started_s": start - spawned, "workflow_s": close - start, "after_close_s": exited - close,
            "pickup_s": pickup if pickup is not None else float("nan")}


def _timed(abdr: Abdr, server: DevServer, name: str, *args: str) -> Measured:
    """One measured `abdr ... --json` with its phases (see _phases)."""
    m = abdr.step(name, *args)
    exited = time.time()
    m.result["_phases"] = asyncio.run(_phases(server, m.result["workflow_id"], exited - m.wall_s, exited))
    return m


def run_userpath(work: Path, img: Any) -> dict[str, Any]:
    d = fresh_dir(work / "userpath" / "abdr")
    logs, cdir, repo = d / "logs", d / CLUSTER, d / "repo"  # the directory names the cluster
    logs.mkdir()
    out: dict[str, Any] = {}
    server = DevServer(d / "temporal.db", logs / "temporal.log")
    worker: WorkerProcess | None = None
    try:
        asyncio.run(server.connect())  # up and answering
        env = one_worker_env(d, server.address, SITE)
        worker = WorkerProcess(SITE, env, logs / "worker.log", "--site", SITE)
        abdr = Abdr(env, logs, server, worker)
        out["help"] = [measure(f"abdr-help-{i}", [ABDR, "--help"], logs, env) for i in range(HELP_RUNS)]
        abdr.cli("cluster", "add", CLUSTER, "--site", SITE, "--driver", "local", "--path", str(cdir))
        abdr.cli("repository", "create", REPO, "--path", str(repo), "--site", SITE)
        vm = abdr_step("import_vm", {"cluster_dir": str(cdir), "image": str(img.base), "name": VM_NAME},
                       logs).result["vm_id"]
        due = (datetime.now(timezone.utc) + timedelta(hours=12)).strftime("%H:%M")  # never during the run
        abdr.cli("backup-plan", "create", PLAN, "--vm", f"{CLUSTER}/{VM_NAME}", "-r", REPO,
                 "--schedule", f"daily {due}", "--retention", "count:5")
        out["warm_s"] = warm(cdir / "vms" / vm / "disks" / "disk0.raw")  # what the full backup reads
        log("userpath: abdr backup-plan run --wait (full)")
        out["full"] = _timed(abdr, server, "abdr-full", "backup-plan", "run", PLAN, "--wait")
        _check_run(out["full"], "FULL")
        out["change"] = abdr_step("rewrite", {"cluster_dir": str(cdir), "vm_id": vm, "fraction": FRACTION,
                                              "seed": MUTATE_SEED}, logs)
        # warm again, as before the full: the driver wrote the change around the page cache
        # (bench/backup.py says why)
        out["warm_incremental_s"] = warm(cdir / "vms" / vm / "disks" / "disk0.raw")
        log("userpath: abdr backup-plan run --wait (incremental)")
        out["incremental"] = _timed(abdr, server, "abdr-incr", "backup-plan", "run", PLAN, "--wait")
        point = _check_run(out["incremental"], "INCREMENTAL")
        log("userpath: abdr restore --mode rebuild --wait")
        out["restore"] = _timed(abdr, server, "abdr-restore", "restore", point, "--mode", "rebuild",
                                "--new-name", f"{VM_NAME}-restored", "--wait")
        same_content([("abdr restore", disk(cdir, out["restore"].result["vm_id"])),
                      ("mutated image", RawFile(img.mutated))])
        out["verified"] = True
        out["activities"] = asyncio.run(activity_seconds(server))
    finally:
        if worker is not None:
            worker.stop()
        server.stop()
    return out


def report(a: dict[str, Any], r: dict[str, Any], size: int) -> tuple[str, dict[str, Any]]:
    help_s = statistics.median(m.wall_s for m in a["help"])
    ratios = {"incremental": a["incremental"].wall_s / r["incremental"].wall_s,
              "restore": r["restore"].wall_s / a["restore"].wall_s}
    met = {"incremental": ratios["incremental"] <= INCREMENTAL_GOAL, "restore": ratios["restore"] >= RESTORE_GOAL}
    lines = [f"== user path: the `abdr` CLI (dev server + one worker process) vs restic, {fmt_bytes(size)} image, "
             "5% change",
             "   wall = the command's spawn to exit; abdr's split at its workflow's start and close (server clock)",
             f"   `abdr --help`: {help_s:.2f} s (median of {len(a['help'])})", ""]
    rows = []
    for step, label in (("full", "backup-plan run --wait (full)"), ("incremental", "backup-plan run --wait (incr)"),
                        ("restore", "restore --mode rebuild --wait")):
        m, p = a[step], a[step].result["_phases"]
        rows.append([f"abdr {label}", f"{m.wall_s:.2f}", f"{p['to_started_s']:.2f}", f"{p['pickup_s']:.3f}",
                     f"{p['workflow_s']:.2f}", f"{p['after_close_s']:.2f}", f"{m.cpu_user_s + m.cpu_sys_s:.2f}"])
    for step in ("full", "incremental", "restore"):
        m = r[step]
        rows.append([f"restic {step}", f"{m.wall_s:.2f}", "", "", "", "", f"{m.cpu_user_s + m.cpu_sys_s:.2f}"])
    lines.append(table(["command", "wall s", "spawn->started s", "pickup s", "workflow s", "closed->exit s",
                        "CLI CPU s"], rows))
    lines += ["",
              f"   abdr's slowest activities: incremental: {_slowest(a['activities'], 'VMBackup', 1)}; "
              f"restore: {_slowest(a['activities'], 'Restore', 0)}", ""]
    lines.append(table(["ratio", "measured", "goal", ""], [
        ["incremental: abdr CLI / restic backup", f"{ratios['incremental']:.3f} (1/{1 / ratios['incremental']:.1f})",
         "<= 1/10", verdict(met["incremental"])],
        ["restore: restic restore / abdr CLI", f"{ratios['restore']:.2f}x", ">= 2x", verdict(met["restore"])]]))
    summary = {"help_s": help_s, "ratios": ratios, "met": met,
               "abdr": {s: {"wall_s": a[s].wall_s, **a[s].result["_phases"]} for s in ("full", "incremental", "restore")},
               "restic": {s: {"wall_s": r[s].wall_s} for s in ("full", "incremental", "restore")}}
    return "\n".join(lines), summary


def bench_userpath(work: Path, size: str = SIZE) -> dict[str, Any]:
    img = images(work, size)
    load = Load()
    try:
        log("userpath: abdr through the CLI")
        a = run_userpath(work, img)
        log("userpath: restic (bench/backup.py's run)")
        r = run_restic(work / "userpath", img, 0)
    finally:
        shutil.rmtree(work / "userpath", ignore_errors=True)
    text, summary = report(a, r, img.size)
    other = load.report()
    text += "\n" + other_load_line(other) + f"\n   load average at the end: {' '.join(other['loadavg_end'])}"
    data = {"benchmark": "userpath", "machine": machine(), "image": size, "summary": summary, "text": text,
            "runs": {"abdr": {k: (v.as_dict() if isinstance(v, Measured) else v) for k, v in a.items() if k != "help"},
                     "restic": {k: (v.as_dict() if isinstance(v, Measured) else v) for k, v in r.items()}}}
    path = write_results(work, "userpath" if size == SIZE else f"userpath-{size}", data)
    print(text + f"\n   results: {path}\n", flush=True)
    return data
