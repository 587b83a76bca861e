"""Every command's --help renders: rich markup in a help text (e.g. `[/PREFIX]`) once made
`replication-plan create --help` crash with a traceback."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from starter.cli.app import app


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    # typer's own click: a group is what has sub-commands.
    for name, sub in getattr(group, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


def test_every_command_renders_its_help() -> None:
    root = typer.main.get_command(app)
    paths = command_paths(root)
    assert len(paths) > 50 and {("replication-plan", "create"), ("replication-plan", "update"),
                                ("failover", "undo"), ()} <= set(paths)
    runner = CliRunner()
    broken = {}
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        if result.exit_code != 0 or crashed or "Traceback" in result.output or "Usage" not in result.output:
            broken[" ".join(path)] = repr(result.exception) or result.output[-200:]
    assert not broken, broken
