"""Map the errors of drivers, the repository and the catalog to Temporal ApplicationErrors:
the type is the error's class name (visible in the UI and to callers; see the catalogue in
models/errors.py), and errors the catalogue says a retry cannot fix are non-retryable, so a
bad request fails at once with its message."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from temporalio.exceptions import ApplicationError

from drivers import base as driver_errors
from drivers.catalog import store as catalog_errors
from models.errors import ERRORS

F = TypeVar("F", bound=Callable[..., Any])

KNOWN: tuple[type[BaseException], ...] = (driver_errors.DriverError, catalog_errors.CatalogError)
# Bad input: a request (or a reply parsed as one) that no retry makes valid.
BAD_INPUT: tuple[type[BaseException], ...] = (ValidationError, KeyError, ValueError)


class InvalidRequest(Exception):
    """A request that contradicts the catalog (e.g. a restore point of another VM)."""


class PointDamaged(InvalidRequest):
    """A restore of a point whose stored data failed its checks (repository verify)."""


def _repository_errors() -> tuple[type[BaseException], ...]:
    from drivers.repository import errors

    return (errors.RepositoryError,)


def _transport_errors() -> tuple[type[BaseException], ...]:
    from drivers.transport.client import TransportError

    return (TransportError,)


def error_type(e: BaseException) -> str:
    """The catalogued type of an error: its class's name, or its nearest catalogued base's
    (a JSONDecodeError is a ValueError to callers), so every type sent out is in the catalogue."""
    return next((c.__name__ for c in type(e).__mro__ if c.__name__ in ERRORS), type(e).__name__)


def as_application_error(e: BaseException) -> ApplicationError:
    message = str(e)
    if isinstance(e, KeyError):  # str(KeyError('x')) is "'x'": say what it is
        message = f"unknown key {e.args[0]!r}" if e.args else "unknown key"
    kind = error_type(e)
    # Retryable only where the catalogue says a retry may fix it: a remote site that does not
    # answer may come back, a lock is released, a transient read is read again.
    retryable = kind in ERRORS and ERRORS[kind].retryable
    return ApplicationError(message, type=kind, non_retryable=not retryable)


def _translated() -> tuple[type[BaseException], ...]:
    return (*KNOWN, InvalidRequest, *_repository_errors(), *_transport_errors(), *BAD_INPUT)


def translate_errors(fn: F) -> F:
    """Decorator for activity methods: known errors become typed ApplicationErrors."""

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ApplicationError:
                raise
            except _translated() as e:
                raise as_application_error(e) from e

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApplicationError:
            raise
        except _translated() as e:
            raise as_application_error(e) from e

    return wrapper  # type: ignore[return-value]
