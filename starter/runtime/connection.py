"""One way to connect to Temporal for the CLI, the workers, the API and services."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from starter.runtime.settings import Settings


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime exporting the SDK's and abdr's metrics for Prometheus."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


async def connect(settings: Settings, *, wait_s: float = 0.0, runtime: Runtime | None = None) -> Client:
    """Connect with the pydantic converter; retry for up to `wait_s` while the server starts."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        try:
            return await Client.connect(
                settings.temporal_address,
                namespace=settings.temporal_namespace,
                tls=settings.tls_config(),
                data_converter=pydantic_data_converter,
                runtime=runtime,
            )
        except RuntimeError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.25)
