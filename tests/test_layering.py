"""The layers of the tree, read from every module's imports (its AST, so lazy imports
inside functions count too): the worker side (`worker.py`, `activities/`, `drivers/`,
`workflows/`, `models/`) may use `starter.runtime` and nothing else of `starter/`; the
runtime imports nothing else of `starter/`; and the CLI's noun modules import only what
the CLI shares, never each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER_SIDE = ["worker.py", "activities", "drivers", "workflows", "models"]
INTERFACES = ("starter.cli", "starter.client", "starter.api", "starter.stack")
CLI_SHARED = {"app", "common", "options", "render", "progress", "grammar", "plan_options", "plan_files", "dr"}


def modules(*tops: str) -> list[Path]:
    found: list[Path] = []
    for top in tops:
        path = ROOT / top
        found += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return found


def imported(path: Path) -> set[str]:
    """Every module name `path` imports: `import a.b`, `from a.b import c` (as a.b and a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_walk_sees_the_tree() -> None:
    assert len(modules(*WORKER_SIDE)) > 50
    assert "starter.runtime.settings" in imported(ROOT / "worker.py")


@pytest.mark.parametrize("path", modules(*WORKER_SIDE), ids=lambda p: str(p.relative_to(ROOT)))
def test_worker_side_imports_only_the_runtime_of_starter(path: Path) -> None:
    bad = sorted(n for n in imported(path) if under(n, INTERFACES))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: only starter.runtime is for the worker side"


def test_runtime_imports_nothing_else_of_starter() -> None:
    for path in modules("starter/runtime"):
        bad = sorted(n for n in imported(path) if under(n, ("starter",)) and not under(n, ("starter.runtime",)))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_cli_nouns_are_siblings() -> None:
    nouns = [p for p in modules("starter/cli") if p.stem not in CLI_SHARED | {"__init__", "__main__"}]
    assert len(nouns) >= 10
    for path in nouns:
        bad = sorted(n for n in imported(path)
                     if under(n, ("starter.cli",)) and n.split(".")[2] not in CLI_SHARED)
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: share through options/render/common instead"
