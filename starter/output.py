"""Output for the CLI: `--json` for scripts, rich tables for people, and errors as one
clear line on stderr with a non-zero exit (never a traceback)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # an error stays ONE line, however long


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2, default=str) + "\n")


def emit_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r.get(c)) for c in columns))
    console.print(table)


def emit(value: Any, as_json: bool, render: Callable[[Any], None]) -> None:
    emit_json(value) if as_json else render(value)


def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


@contextmanager
def user_errors(*known: type[BaseException]) -> Iterator[None]:
    """Turn expected failures into one line on stderr and exit code 1."""
    try:
        yield
    except ValidationError as e:
        err_console.print(f"[red]error:[/red] {escape(validation_message(e))}", highlight=False)
        raise typer.Exit(2) from None
    except known as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        raise typer.Exit(1) from None
