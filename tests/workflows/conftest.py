"""A time-skipping server of this package's own (so its long-lived workers never serve
another test's workflows), with the real workflows and the activity doubles running on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
async def client(skipping_env: WorkflowEnvironment) -> AsyncIterator[Client]:
    async with workers(skipping_env) as c:
        yield c
