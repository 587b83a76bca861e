"""Map the errors of drivers, the repository and the catalog to Temporal ApplicationErrors:
the type is the error's class name (visible in the UI and to callers), and errors that a
retry cannot fix are non-retryable, so a bad request fails at once with its message."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.exceptions import ApplicationError

from drivers import base as driver_errors
from drivers.catalog import store as catalog_errors

F = TypeVar("F", bound=Callable[..., Any])

# Transient by nature: a retry may succeed.
RETRYABLE = (driver_errors.ResourceLocked, driver_errors.OperationTimeout)
KNOWN: tuple[type[BaseException], ...] = (driver_errors.DriverError, catalog_errors.CatalogError)


class InvalidRequest(Exception):
    """A request that contradicts the catalog (e.g. a restore point of another VM)."""


def _repository_errors() -> tuple[type[BaseException], ...]:
    from drivers.repository import errors

    return (errors.RepositoryError,)


def _transport_errors() -> tuple[type[BaseException], ...]:
    from drivers.transport.client import TransportError

    return (TransportError,)


def as_application_error(e: BaseException) -> ApplicationError:
    from drivers.transport.client import TransportError

    from drivers.repository.errors import RepositoryLocked

    # A remote site that does not answer may come back, a lock is released: retry those.
    retryable = (isinstance(e, (*RETRYABLE, RepositoryLocked))
                 or (isinstance(e, TransportError) and "unreachable" in str(e)))
    return ApplicationError(str(e), type=type(e).__name__, non_retryable=not retryable)


def translate_errors(fn: F) -> F:
    """Decorator for activity methods: known errors become typed ApplicationErrors."""

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except ApplicationError:
                raise
            except (*KNOWN, InvalidRequest, *_repository_errors(), *_transport_errors()) as e:
                raise as_application_error(e) from e

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApplicationError:
            raise
        except (*KNOWN, InvalidRequest, *_repository_errors(), *_transport_errors()) as e:
            raise as_application_error(e) from e

    return wrapper  # type: ignore[return-value]
