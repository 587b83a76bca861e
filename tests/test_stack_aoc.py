"""`ABDR_DEMO_AOC=true abdr up`: two AOC simulators (one per site) start with the stack,
the demo plans run on their clusters through the aoc driver, the points and the replicas are
the source's bytes, and Ctrl-C stops the simulators too."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from drivers.aoc import AocDriver
from tests.e2e.oracle import read_disk
from tests.ports import free_port
from tests.test_stack import ABDR, Up, alive, descendants, stack_env  # noqa: F401  (the fixture)


def abdr(env: dict[str, str], *args: str) -> dict | list:
    r = subprocess.run([ABDR, *args, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_up_with_the_aoc_demo_runs_its_plans_on_two_simulated_aocs(stack_env: dict[str, str]) -> None:  # noqa: F811
    ports = [free_port(), free_port()]
    env = {k: v for k, v in stack_env.items() if not k.startswith("ABDR_AOC_")}
    env.update(ABDR_DEMO_AOC="true", ABDR_DEMO_AOC_PORTS=json.dumps(ports))
    up = Up(env)
    try:
        assert "AOC demo seeded" in up.banner and "AOC demo seed failed" not in up.banner, up.banner
        sims = descendants(up.proc.pid)
        clusters = {c["name"]: c for c in abdr(env, "cluster", "list")}  # type: ignore[union-attr]
        assert (clusters["aoc-default"]["driver"], clusters["aoc-default"]["site"]) == ("aoc", "default")
        assert (clusters["aoc-dr"]["driver"], clusters["aoc-dr"]["site"]) == ("aoc", "dr")

        run = abdr(env, "backup-plan", "run", "demo-aoc", "--wait")
        assert run["result"] == "SUCCESS", run  # type: ignore[call-overload]
        assert {(v["vm"]["cluster"], v["type"]) for v in run["vms"]} == {("aoc-default", "FULL")}, run  # type: ignore[call-overload]
        rep = abdr(env, "replication-plan", "run", "demo-aoc-dr", "--wait")
        assert rep["result"] == "SUCCESS", rep  # type: ignore[call-overload]

        os.environ["ABDR_AOC_SECRETS_FILE"] = str(Path(env["ABDR_DATA_DIR"]) / "aoc-sim" / "secrets.json")
        try:
            a = AocDriver(clusters["aoc-default"]["endpoint"], "aoc-default")
            b = AocDriver(clusters["aoc-dr"]["endpoint"], "aoc-dr")
            web = read_disk(a, "aoc-web")  # the oracle: what the source holds (nothing writes it meanwhile)
            point = next(v["point_id"] for v in run["vms"] if v["vm"]["vm"] == "aoc-web")  # type: ignore[call-overload]
            abdr(env, "restore", point, "--mode", "rebuild", "--new-name", "aoc-web-copy", "--wait")
            assert read_disk(a, "aoc-web-copy") == web, "the demo's point restored differs from its source"
            assert read_disk(b, "aoc-web-replica") == web, "the demo's replica differs from its source"
        finally:
            del os.environ["ABDR_AOC_SECRETS_FILE"]
    finally:
        assert up.stop() == 0
    deadline = time.monotonic() + 30
    while any(alive(p) for p in sims) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in sims if alive(p)], "the AOC simulators outlived abdr up"
