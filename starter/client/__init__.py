"""The Python client of abdr, for services, the CLI and the REST API (see `core.AbdrClient`).

    from starter.client import AbdrClient
"""

from starter.client.core import AbdrClient
from starter.client.errors import AbdrError, failure_message

__all__ = ["AbdrClient", "AbdrError", "failure_message"]
