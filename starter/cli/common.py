"""What every `abdr` command shares: the errors shown as one line (with an exit code per
kind of failure) and running a coroutine with a connected AbdrClient. The client, Temporal
and the drivers are imported when a command first needs them, never at import: `abdr
--help` and the command tree load none of them (tests/test_cli_imports.py)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.markup import escape

from starter.cli.grammar import UsageError
from starter.cli.render import err_console, validation_message

if TYPE_CHECKING:
    from models.inventory import Cluster
    from starter.client import AbdrClient, AbdrError

T = TypeVar("T")


@cache
def known_errors() -> tuple[type[BaseException], ...]:
    """The failures a command reports as one line (the rest are bugs)."""
    from temporalio.service import RPCError

    from drivers.base import DriverError
    from drivers.catalog.errors import CatalogError
    from drivers.repository.errors import RepositoryError
    from starter.client import AbdrError
    from starter.stack.errors import StackError

    return (AbdrError, CatalogError, DriverError, StackError, RPCError, RuntimeError, OSError, ValueError,
            RepositoryError)


@cache
def exit_codes() -> dict[type[AbdrError], int]:
    """Exit codes (README, "CLI reference"): 2 is bad input whoever found it (the CLI before
    contacting anything, or a worker); a client exception's class gives the rest; 1 is any
    other failure."""
    from starter.client import AbdrError, Busy, Conflict, Damaged, Invalid, NotFound, Unavailable

    return {AbdrError: 1, Invalid: 2, NotFound: 3, Conflict: 4, Busy: 5, Unavailable: 6, Damaged: 7}


def exit_code(e: BaseException) -> int:
    """The exit code of an expected failure: by its client exception class, else 1."""
    codes = exit_codes()
    return next((codes[c] for c in type(e).__mro__ if c in codes), 1)


@contextmanager
def cli_errors() -> Iterator[None]:
    """Expected failures: one line on stderr; exit 2 for bad input, a code per kind of client
    failure (`exit_codes`), 1 for everything else.
    A command's own `typer.Exit` passes through (it is a RuntimeError, which would otherwise
    be reported as "error: 1"). The known failures' classes are imported only once one
    was raised: a command that fails on its input never loads the client for it."""
    code: int | None = None
    try:
        yield
    except typer.Exit as e:
        code = e.exit_code
    except UsageError as e:
        err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
        code = 2
    except ValidationError as e:
        err_console.print(f"[red]error:[/red] {escape(validation_message(e))}", highlight=False)
        code = 2
    except KeyboardInterrupt:
        err_console.print("interrupted (a workflow already started keeps running; see `abdr job list`)",
                          highlight=False)
        code = 130
    except Exception as e:
        if isinstance(e, known_errors()):
            err_console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)
            code = exit_code(e)
        elif os.environ.get("ABDR_TRACEBACK"):  # a bug: ABDR_TRACEBACK=1 shows where
            raise
        else:  # a bug: still one line
            err_console.print(f"[red]error:[/red] unexpected {type(e).__name__}: {escape(str(e))} "
                              "(a bug in abdr; ABDR_TRACEBACK=1 shows the traceback)", highlight=False)
            code = 1
    if code is not None:
        raise typer.Exit(code)


async def _connect() -> AbdrClient:
    from starter.client import AbdrClient, AbdrError
    from starter.runtime.settings import get_settings

    settings = get_settings()
    try:
        return await AbdrClient.connect(settings)
    except RuntimeError as e:
        text = str(e) or type(e).__name__
        found = re.search(r'message: "([^"]+)"', text)  # the OS's reason inside tonic's error
        detail = found[1] if found else text.splitlines()[0][:200]
        # Exit 1, not Unavailable's 6: nothing was asked of abdr yet (scripts read 1 as "not run").
        raise AbdrError(f"cannot reach Temporal at {settings.temporal_address}: {detail} "
                        "(is `abdr up` running? see ABDR_TEMPORAL_ADDRESS)") from None


def with_client(fn: Callable[[AbdrClient], Awaitable[T]]) -> T:
    """Connect (settings from ABDR_*), run `fn(client)`, return its result."""

    async def main() -> T:
        return await fn(await _connect())

    return asyncio.run(main())


async def find_cluster(client: AbdrClient, name: str) -> Cluster:
    from starter.client import NotFound

    for c in await client.list_clusters():
        if c.name == name:
            return c
    raise NotFound(f"cluster {name!r} not found")


def need_choice(value: Any, message: str) -> Any:
    if value is None:
        raise UsageError(message)
    return value
