"""The error catalogue (models/errors.py) is complete and is what every layer reads: every
error class the activities translate and every type the workflows and activities raise or
test by name is in it; the retry policies' non-retryable list, the activities' retryability,
the client's exception classes, the REST API's statuses and the CLI's exit codes all follow
from it."""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError, TimeoutError, TimeoutType

from activities.errors import _translated, as_application_error, error_type
from models.errors import ERRORS, Meaning, non_retryable_types
from starter.api.errors import _WHY, STATUS, ErrorBody, status_of
from starter.cli.app import EXIT_CODES_HELP
from starter.cli.common import exit_code, exit_codes
from starter.client.errors import BY_MEANING, AbdrError, Busy, Conflict, NotFound, Unavailable, failure_error
from workflows.common import NON_RETRYABLE, retry

ROOT = Path(__file__).resolve().parent.parent
# Raised only inside the Admin workflow, which sends it as InvalidRequest.
NEVER_SENT = {"AdminRefused"}


def abdr_subclasses(bases: tuple[type[BaseException], ...]) -> set[type[BaseException]]:
    """Every class of abdr's worker side (drivers, activities, models) under one of `bases`."""
    for package in ("drivers", "activities", "models"):
        for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if ".migrations" not in info.name:  # alembic scripts run only inside alembic
                importlib.import_module(info.name)
    found: set[type[BaseException]] = set()
    todo = list(bases)
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if cls.__module__.split(".")[0] in ("drivers", "activities", "models") or cls in bases:
            found.add(cls)
    return found


def test_every_translated_error_class_is_catalogued() -> None:
    classes = abdr_subclasses(_translated())
    assert len(classes) > 30
    missing = sorted(f"{c.__module__}.{c.__name__}" for c in classes
                     if c.__name__ not in ERRORS and c.__name__ not in NEVER_SENT)
    assert not missing, f"add them to models/errors.py's catalogue: {missing}"


def raised_type_names() -> dict[str, str]:
    """Every ApplicationError type named in workflows/ and activities/: `type="X"` of an
    ApplicationError, the kind given to (or defaulted by) `refuse`, and `x.type == "X"` tests."""
    names: dict[str, str] = {}
    for path in sorted([*(ROOT / "workflows").rglob("*.py"), *(ROOT / "activities").rglob("*.py")]):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Call):
                func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
                if func == "ApplicationError":
                    names.update({k.value.value: where for k in node.keywords
                                  if k.arg == "type" and isinstance(k.value, ast.Constant)})
                if func == "refuse" and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    names[node.args[1].value] = where
            elif isinstance(node, ast.FunctionDef) and node.name == "refuse":
                names.update({d.value: where for d in node.args.defaults if isinstance(d, ast.Constant)})
            elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Attribute) and node.left.attr == "type"
                  and all(isinstance(c, ast.Constant) and isinstance(c.value, str) for c in node.comparators)):
                names.update({c.value: where for c in node.comparators})  # type: ignore[attr-defined]
    return names


def test_every_type_raised_or_tested_by_name_is_catalogued() -> None:
    names = raised_type_names()
    assert {"InvalidRequest", "SourceNotStopped", "StateConflict", "SourceRunning", "InvalidState",
            "NotFound"} <= set(names)
    missing = {n: where for n, where in names.items() if n not in ERRORS}
    assert not missing, f"add them to models/errors.py's catalogue: {missing}"


def test_the_retry_policies_take_the_catalogues_non_retryable_types() -> None:
    assert NON_RETRYABLE == non_retryable_types() == [n for n, t in ERRORS.items() if not t.retryable]
    assert retry().non_retryable_error_types == NON_RETRYABLE
    assert {"TransportUnreachable", "TransportTransient", "ResourceLocked", "RepositoryLocked",
            "ConcurrentChange", "OperationTimeout"}.isdisjoint(NON_RETRYABLE)


def test_activities_send_catalogued_types_with_the_catalogues_retryability() -> None:
    from drivers.catalog.errors import StateConflict
    from drivers.repository.errors import CorruptChunk, RepositoryLocked
    from drivers.transport.client import TransportUnreachable

    for err, retryable in [(TransportUnreachable("down"), True), (RepositoryLocked("gc"), True),
                           (StateConflict("claimed"), False), (CorruptChunk("ab", "torn"), False)]:
        sent = as_application_error(err)
        assert sent.type == type(err).__name__ and sent.non_retryable is not retryable
    # An uncatalogued subclass goes out under its nearest catalogued base: the set stays closed.
    with pytest.raises(json.JSONDecodeError) as e:
        json.loads("{")
    assert error_type(e.value) == "ValueError" and as_application_error(e.value).type == "ValueError"


def chain(*errors: BaseException) -> BaseException:
    """errors[0] caused by errors[1] caused by ..., as a client sees a failure."""
    for outer, inner in zip(errors, errors[1:]):
        outer.__cause__ = inner
    return errors[0]


def test_client_exceptions_follow_the_failure_chains_types() -> None:
    refused = failure_error(chain(ApplicationError("replica busy", type="StateConflict"),
                                  ApplicationError("claimed", type="NotFound")))
    assert type(refused) is Conflict and refused.type == "StateConflict" and str(refused) == "claimed"
    deep = failure_error(chain(ApplicationError("wrapped", type="RuntimeError"),
                               ApplicationError("plan 'x' not found", type="NotFound")))
    assert type(deep) is NotFound and str(deep) == "plan 'x' not found"
    assert type(failure_error(ApplicationError("boom", type="OnPurpose"))) is AbdrError
    late = failure_error(TimeoutError("activity timed out", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[]))
    assert type(late) is Unavailable
    assert {BY_MEANING[m].meaning for m in Meaning} == set(Meaning)  # a class per meaning
    busy = Busy("plan gold is running", "ResourceLocked").reworded("plan gold is running (workflow w)")
    assert type(busy) is Busy and busy.type == "ResourceLocked"


def test_every_client_exception_has_a_status_and_an_exit_code() -> None:
    for meaning, cls in BY_MEANING.items():
        e = cls("x")
        assert status_of(e) in _WHY, meaning  # declared in the OpenAPI document
        assert ErrorBody(error="x", kind=meaning.value).kind == meaning.value  # the REST body names its kind
        assert exit_code(e) == exit_codes()[cls]
    assert status_of(NotFound("x")) == 404 and status_of(Conflict("x")) == status_of(Busy("x")) == 409
    assert status_of(Unavailable("x")) == 503 and status_of(AbdrError("x")) == 400
    assert set(STATUS) == set(BY_MEANING.values())
    codes = list(exit_codes().values())
    assert len(set(codes)) == len(codes) and exit_codes()[AbdrError] == 1
    assert exit_code(RuntimeError("other")) == 1
    for code in codes:
        assert f"{code} " in EXIT_CODES_HELP
