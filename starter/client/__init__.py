"""The Python client of abdr, for services, the CLI and the REST API (see `core.AbdrClient`).

    from starter.client import AbdrClient, NotFound
"""

from starter.client.core import AbdrClient
from starter.client.errors import (
    AbdrError,
    Busy,
    Conflict,
    Damaged,
    Invalid,
    NotFound,
    Unavailable,
    failure_error,
    failure_message,
)

__all__ = ["AbdrClient", "AbdrError", "Busy", "Conflict", "Damaged", "Invalid", "NotFound", "Unavailable",
           "failure_error", "failure_message"]
