"""The CLI and the REST API hold to one list of operations (starter/client/operations.py):
every command of the typer app and every route of the FastAPI app is in it, every entry's
command and route exist, each route calls the client method the list names, and an
operation on one side only says why. An operation added to one interface alone fails here."""

from __future__ import annotations

import inspect
import re
from typing import Any

import typer
from fastapi.routing import APIRoute

from starter.api.main import make_api
from starter.cli.app import app
from starter.client import AbdrClient
from starter.client.operations import OPERATIONS
from starter.runtime.settings import Settings


def cli_commands(group: Any, prefix: tuple[str, ...] = ()) -> set[str]:
    """Every command path of the typer app ("backup-plan run"). A group's hidden default
    command (`abdr failover PLAN VM`) is the group's own path."""
    found: set[str] = set()
    for name, sub in getattr(group, "commands", {}).items():
        path = prefix if sub.hidden else (*prefix, name)
        if getattr(sub, "commands", None):
            found |= cli_commands(sub, path)
        else:
            found.add(" ".join(path))
    return found


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """The app's API routes, through the routers it includes (FastAPI wraps each one)."""
    found: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            found.append(r)
        elif hasattr(r, "original_router"):
            found += api_routes(r.original_router.routes)
    return found


def rest_routes() -> dict[str, APIRoute]:
    """Every route the app serves and documents, as "METHOD /path" (path converters dropped:
    {workflow_id:path} is {workflow_id})."""
    api = make_api(Settings(), "t" * 32)
    routes = {f"{m} {re.sub(r':[a-z]+}', '}', r.path)}": r for r in api_routes(api.routes) for m in r.methods or ()
              if r.include_in_schema}  # not /docs and /redoc: pages about the API, no operations
    documented = {f"{m.upper()} {path}" for path, item in api.openapi()["paths"].items() for m in item}
    assert documented == set(routes), documented ^ set(routes)
    return routes


def test_the_walks_see_both_interfaces() -> None:
    commands, routes = cli_commands(typer.main.get_command(app)), rest_routes()
    assert {"failover", "failover undo", "backup-plan run", "up", "job cancel"} <= commands
    assert {"POST /v1/failover", "GET /v1/jobs/{workflow_id}", "POST /v1/jobs/{workflow_id}/cancel"} <= set(routes)
    assert len(commands) > 45 and len(routes) > 45


def test_every_command_and_route_is_a_listed_operation() -> None:
    commands, routes = cli_commands(typer.main.get_command(app)), rest_routes()
    listed_cli = {op.cli for op in OPERATIONS if op.cli}
    listed_rest = {op.rest for op in OPERATIONS if op.rest}
    assert not commands - listed_cli, f"commands missing from starter/client/operations.py: {commands - listed_cli}"
    assert not set(routes) - listed_rest, f"routes missing from the operations list: {set(routes) - listed_rest}"
    assert not listed_cli - commands, f"listed commands the CLI does not have: {listed_cli - commands}"
    assert not listed_rest - set(routes), f"listed routes the REST API does not have: {listed_rest - set(routes)}"
    assert len({op.rest for op in OPERATIONS if op.rest}) == len([op for op in OPERATIONS if op.rest])


def test_an_operation_on_one_side_only_says_why() -> None:
    one_sided = [op for op in OPERATIONS if op.cli is None or op.rest is None]
    assert all(op.why for op in one_sided), [op for op in one_sided if not op.why]
    assert not [op for op in OPERATIONS if op.cli and op.rest and op.why], "a reason for a gap that is not there"
    # CLI only: the stack itself and the operator's local files; nothing else.
    assert {op.cli for op in one_sided} == {"up", "api", "aoc-sim", "status", "apply", "vm import", "vm write"}


def test_each_route_calls_the_client_method_listed() -> None:
    routes = rest_routes()
    for op in OPERATIONS:
        if op.client is not None:
            assert callable(getattr(AbdrClient, op.client, None)), f"AbdrClient has no {op.client}"
        if op.rest is not None:
            source = inspect.getsource(routes[op.rest].endpoint)
            assert f"c.{op.client}(" in source, f"{op.rest} does not call AbdrClient.{op.client}"


def test_every_route_answers_a_named_model_in_the_document() -> None:
    """Typed answers: each route's success is a model of the document (or a list of one),
    never an untyped object, so a client generated from the document reads every field."""
    doc = make_api(Settings(), "t" * 32).openapi()
    models = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            [(code, ok)] = [(c, r) for c, r in op["responses"].items() if c.startswith("2")]
            schema = ok["content"]["application/json"]["schema"]
            ref = schema.get("items", schema).get("$ref", "")
            assert ref.rsplit("/", 1)[-1] in models, f"{method.upper()} {path} {code}: untyped answer {schema}"
    assert all(r.response_model is not None for r in rest_routes().values())
