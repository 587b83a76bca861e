"""The CLI's start-up stays light: its help and a command refused on its input, each in a fresh
interpreter, load neither Temporal, nor the client, nor a workflow, nor a driver (only the
drivers' registry, whose names and descriptions `cluster add --help` shows). What they
load, not how long it takes: the figures are in docs/scale.md, "The user-level path"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the command as `abdr` runs it (minus the os._exit of
# starter.cli.app.main, so that the modules can be listed after it), then what it loaded.
PROBE = """
import json, sys
from starter.cli.app import app
try:
    app(sys.argv[1:], standalone_mode=False)
except BaseException:
    pass
print("\\nMODULES " + json.dumps(sorted(sys.modules)))
"""
HEAVY = ("temporalio", "workflows", "activities", "starter.client", "starter.stack", "starter.runtime", "drivers")
REGISTRY = {"drivers", "drivers.base"}  # the drivers' names and descriptions, for --driver's choices


def loaded(*args: str) -> list[str]:
    env = {**os.environ, "ABDR_TEMPORAL_ADDRESS": "127.0.0.1:1"}  # nothing answers there: a connect fails at once
    p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    line = next(x for x in p.stdout.splitlines() if x.startswith("MODULES "))
    return list(json.loads(line.removeprefix("MODULES ")))


@pytest.mark.parametrize("args", [
    ["--help"],
    ["backup-plan", "--help"],
    ["backup-plan", "run", "--help"],
    ["restore", "--help"],
    ["cluster", "add", "--help"],
    ["failover-test", "start", "--help"],
    ["backup-plan", "create", "p"],  # refused before anything is contacted: no --vm, --repository, ...
], ids=" ".join)
def test_help_and_refused_input_load_no_client_temporal_workflow_or_driver(args: list[str]) -> None:
    heavy = [m for m in loaded(*args) if m.startswith(HEAVY) and m not in REGISTRY]
    assert heavy == [], f"`abdr {' '.join(args)}` imported {heavy}"


def test_the_probe_sees_what_a_command_that_connects_loads() -> None:
    """The probe itself works: a command that talks to Temporal does load the client (it
    cannot connect here, which it finds out after the import)."""
    mods = loaded("site", "list")
    assert "temporalio.client" in mods and "starter.client.core" in mods
