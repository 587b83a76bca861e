"""The REST API on a real HTTP server on loopback, over the e2e stack: token auth, the
OpenAPI document, and a plan created, run, followed and restored through HTTP (the restore
compared byte for byte with the disk the test captured before the run)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from starter.api.main import make_api
from tests.e2e.conftest import MiB, Stack
from tests.e2e.oracle import assert_image, capture

TOKEN = "s3cret-token"


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def connect():  # the API process would connect itself; here it shares the stack's client
        return stack.client

    server = uvicorn.Server(uvicorn.Config(make_api(stack.settings, TOKEN, connect), host="127.0.0.1", port=port,
                                          log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                 headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
        yield client
    server.should_exit = True
    await task


async def finished(api: httpx.AsyncClient, workflow_id: str) -> dict:
    for _ in range(300):
        job = (await api.get(f"/v1/jobs/{workflow_id}")).json()
        if job["status"] != "RUNNING":
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"{workflow_id} did not finish")


async def test_rest_api_runs_a_plan_end_to_end(stack: Stack, api: httpx.AsyncClient) -> None:
    stack.make_vm("web", size=2 * MiB)
    source = capture(stack.driver, "web")  # the oracle of the point the plan run takes
    assert (await api.get("/v1/backup-plans", headers={"Authorization": "Bearer wrong"})).status_code == 401
    doc = (await api.get("/openapi.json")).json()
    assert {"/v1/backup-plans", "/v1/failover", "/v1/failback", "/v1/restores"} <= set(doc["paths"])

    plan = {"name": "api", "vms": [{"cluster": "c1", "vm": "web"}], "repository": "r1",
            "schedule": {"kind": "DAILY", "times": ["01:00"]}, "retention": {"kind": "COUNT", "value": 3}}
    assert (await api.post("/v1/backup-plans", json=plan)).status_code == 201
    dup = await api.post("/v1/backup-plans", json=plan)
    assert dup.status_code == 409 and "already exists" in dup.json()["error"]
    bad = await api.post("/v1/backup-plans", json={**plan, "name": "x", "retention": {"kind": "COUNT"}})
    assert bad.status_code == 422 and "retention COUNT needs a number" in bad.text

    run = await api.post("/v1/backup-plans/api/run")
    assert run.status_code == 202 and run.json()["workflow_id"] == "backup-plan/api"
    job = await finished(api, "backup-plan/api")
    assert job["result"]["result"] == "SUCCESS"
    points = (await api.get("/v1/restore-points", params={"plan": "api"})).json()
    assert len(points) == 1 and points[0]["vm"] == "web"

    restore = await api.post("/v1/restores", json={"point_id": points[0]["id"], "mode": "REBUILD",
                                                    "new_name": "web-api"})
    assert restore.status_code == 202, restore.text
    job = await finished(api, restore.json()["workflow_id"])
    assert job["result"]["vm"]["vm"] == "web-api"
    assert_image(stack.driver, "web-api", source, "the point restored through the REST API")
    missing = await api.get("/v1/jobs/backup-plan/nope")
    assert missing.status_code == 404
