"""The client's exceptions: `AbdrError` and a subclass per meaning of models/errors.py's
catalogue, chosen from a failure's `ApplicationError.type` (never from its message). The REST
API answers a status per class, the CLI exits with a code per class; `except AbdrError`
catches them all."""

from __future__ import annotations

from typing import ClassVar

from temporalio.exceptions import ApplicationError, TimeoutError

from models.errors import Meaning, meaning_of


class AbdrError(Exception):
    """A failure to show the user as is (the message names what and why). `type` is the
    catalogued ApplicationError type behind it, when a worker or workflow raised it."""

    meaning: ClassVar[Meaning] = Meaning.FAILED

    def __init__(self, message: str, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type

    def reworded(self, message: str) -> AbdrError:
        """The same failure (class and type) with another message, e.g. one naming the workflow."""
        return self.__class__(message, self.type)


class NotFound(AbdrError):
    """What the request names does not exist."""

    meaning = Meaning.NOT_FOUND


class Conflict(AbdrError):
    """It exists already, is in use, or is not in the state the operation needs."""

    meaning = Meaning.CONFLICT


class Busy(AbdrError):
    """Another operation holds it (a run of the plan, a DR operation on the VM): try later."""

    meaning = Meaning.BUSY


class Invalid(AbdrError):
    """The request contradicts the catalog, a rule, or what the driver can do."""

    meaning = Meaning.INVALID


class Unavailable(AbdrError):
    """A worker, a site or a guest did not answer in time."""

    meaning = Meaning.UNAVAILABLE


class Damaged(AbdrError):
    """Stored data fails its checks (`abdr repository verify` says which)."""

    meaning = Meaning.DAMAGED


BY_MEANING: dict[Meaning, type[AbdrError]] = {
    cls.meaning: cls for cls in (AbdrError, NotFound, Conflict, Busy, Invalid, Unavailable, Damaged)}


def failure_message(e: BaseException) -> str:
    while e.__cause__ is not None:
        e = e.__cause__
    return e.message if isinstance(e, ApplicationError) else str(e)


def failure_error(e: BaseException) -> AbdrError:
    """The client exception of a failure chain (WorkflowFailureError -> ActivityError ->
    ApplicationError ...): the class of its outermost catalogued ApplicationError type (the
    decision of whoever refused last); a timeout with none is Unavailable; else AbdrError."""
    timed_out = False
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ApplicationError) and (meaning := meaning_of(cause.type)) is not None:
            return BY_MEANING[meaning](failure_message(e), cause.type)
        timed_out = timed_out or isinstance(cause, TimeoutError)
        cause = cause.__cause__
    return (Unavailable if timed_out else AbdrError)(failure_message(e))
