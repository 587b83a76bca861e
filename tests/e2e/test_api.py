"""The REST API on a real HTTP server on loopback, over the e2e stack: token auth, the
OpenAPI document, and a plan created, run, followed and restored through HTTP (the restore
compared byte for byte with the disk the test captured before the run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from starter.api.main import make_api
from starter.client import AbdrClient
from starter.runtime.settings import Settings
from tests.e2e.conftest import MiB, Stack
from tests.e2e.oracle import assert_image, capture
from tests.e2e.processes import DevServer
from tests.ports import free_port

TOKEN = "s3cret-token"


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """`app` on a real uvicorn server on loopback; a client with the token."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async def connect() -> AbdrClient:  # the API process would connect itself; here it shares the stack's client
        return stack.client

    async with serving(make_api(stack.settings, TOKEN, connect)) as client:
        yield client


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


async def test_every_error_answers_one_shape_with_its_kind(stack: Stack, api: httpx.AsyncClient) -> None:
    """The framework's own refusals (token, route, method, validation) and the workers'
    alike: {"error": message, "kind": kind, "details": ...}, the status following the kind."""
    stack.make_vm("web", size=1 * MiB)
    plan = {"name": "shape", "vms": [{"cluster": "c1", "vm": "web"}], "repository": "r1",
            "schedule": {"kind": "DAILY", "times": ["01:00"]}, "retention": {"kind": "COUNT", "value": 3}}
    assert (await api.post("/v1/backup-plans", json=plan)).status_code == 201

    async def error(status: int, kind: str, method: str, url: str, **kw: object) -> dict:
        r = await api.request(method, url, **kw)  # type: ignore[arg-type]  # kw: httpx request options
        body = r.json()
        assert (r.status_code, body["kind"], set(body)) == (status, kind, {"error", "kind", "details"}), r.text
        return body

    anon = await error(401, "unauthorized", "GET", "/v1/backup-plans", headers={"Authorization": "Bearer wrong"})
    assert anon == {"error": "a valid bearer token is required", "kind": "unauthorized", "details": None}
    assert (await error(404, "not_found", "GET", "/v1/nothing-here"))["error"] == "Not Found"
    await error(405, "invalid", "PATCH", "/v1/backup-plans")
    assert "'nope' not found" in (await error(404, "not_found", "GET", "/v1/backup-plans/nope"))["error"]
    assert "already exists" in (await error(409, "conflict", "POST", "/v1/backup-plans", json=plan))["error"]
    other = await error(400, "invalid", "PUT", "/v1/backup-plans/other", json=plan)
    assert other["error"] == "the body names plan 'shape', the path 'other'"
    # Validation: names refused in words, in the path, the query and the body alike.
    rules = "a name uses letters, digits, '.', '_' or '-', starts with a letter, digit or '_', and has 1-63 characters"
    for method, url, kw, words in [
        ("GET", "/v1/backup-plans/.bad", {}, "path.name: '.bad' starts with '.'"),
        ("GET", "/v1/restore-points", {"params": {"vm": "c1/a b"}}, "query.vm: 'c1/a b': 'a b' contains ' '"),
        ("POST", "/v1/backup-plans", {"json": {**plan, "name": "a/b"}}, "body.name: 'a/b' looks like a path ('/', '\\' or '..')"),
    ]:
        body = await error(422, "invalid", method, url, **kw)
        assert body["error"] == f"invalid request: {words}; {rules}" and body["details"], body
        assert "pattern" not in body["error"]


async def test_temporal_gone_answers_503_in_the_one_shape(tmp_path: Path) -> None:
    """Temporal stopping after the API connected is `unavailable` (503), not a plain-text 500."""
    server = DevServer(tmp_path / "temporal.db").start()
    try:
        settings = Settings(temporal_address=server.address, data_dir=tmp_path / "state")
        async with serving(make_api(settings, TOKEN)) as api:
            server.stop()
            r = await api.get("/v1/backup-plans")
            assert r.status_code == 503 and r.json()["kind"] == "unavailable", r.text
            assert r.json()["error"].startswith("Temporal did not answer: ")
    finally:
        server.stop()
