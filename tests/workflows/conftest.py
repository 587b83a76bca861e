"""A time-skipping server of this package's own (so its long-lived workers never serve
another test's workflows), with the real workflows and the activity doubles running on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from tests.conftest import _binary
from tests.workflows.doubles import register_search_attributes, workers


@pytest.fixture(scope="session")
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"), data_converter=pydantic_data_converter)
    try:
        await register_search_attributes(env)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def running_doubles(skipping_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with workers(skipping_env) as c:
        yield c


@pytest.fixture
async def client(running_doubles: Client, skipping_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    """The client to start workflows with. After the test, the skipping clock must still run:
    an activity left started (see doubles.hang) would stop it, and every later retry or
    timer would wait in real time."""
    yield running_doubles
    try:
        await asyncio.wait_for(skipping_env.sleep(timedelta(hours=1)), timeout=5)
    except asyncio.TimeoutError:
        raise AssertionError("this test left the test server's clock stopped") from None
