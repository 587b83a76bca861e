"""The REST API's documentation pages render on a machine without the internet: /docs
(Swagger UI) and /redoc, loaded by `abdr api` itself in headless Chromium with every fetch
off the machine failing, list every operation of the API's OpenAPI document (FastAPI's own
pages fetch their scripts from a CDN and stay blank there)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.e2e.api_process import api_process
from tests.e2e.browser import dump_dom
from tests.e2e.conftest import Stack

TOKEN = "docs-browser-" + "d" * 24
METHODS = ("get", "post", "put", "patch", "delete")


def operation_ids(doc: dict[str, Any]) -> set[str]:
    return {op["operationId"] for item in doc["paths"].values() for method, op in item.items() if method in METHODS}


async def test_docs_and_redoc_render_every_operation_offline(stack: Stack) -> None:
    async with api_process(stack, TOKEN) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=60) as anon:
            doc = (await anon.get("/openapi.json")).json()
        assert len(operation_ids(doc)) >= 20

        swagger = await dump_dom(f"{api.url}/docs")
        # Swagger UI draws an "opblock" per operation (id operations-<tag>-<operationId>),
        # its path in data-path: every one of the document's, and nothing else.
        drawn = set(re.findall(r'<div class="opblock opblock-[a-z]+[^"]*" id="operations-[^"]*-(\w+)"', swagger))
        assert drawn == operation_ids(doc), swagger[-3000:]
        paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', swagger))
        assert paths == set(doc["paths"])

        redoc = await dump_dom(f"{api.url}/redoc")
        sections = set(re.findall(r'data-section-id="operation/(\w+)"', redoc))
        assert sections == operation_ids(doc), redoc[-3000:]
