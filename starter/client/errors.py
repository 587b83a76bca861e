"""The client's errors: what services, the CLI and the REST API catch from `AbdrClient`."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError


class AbdrError(Exception):
    """A failure to show the user as is (the message names what and why)."""


def failure_message(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return e.message if isinstance(e, ApplicationError) else str(e)
