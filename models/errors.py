"""The catalogue of the error types abdr raises as `ApplicationError(type=...)`: whether a
retry may fix each, and what it means to a caller. One table, three readers: activities
translate errors by it (activities/errors.py), the workflows' retry policies take their
non-retryable list from it (workflows/common.py), and the client turns a failure's type into
an exception by its meaning (starter/client/errors.py), from which the REST API takes its
status and the CLI its exit code.

A type is a class name: the driver, catalog, repository and transport errors the activities
translate (an uncatalogued subclass goes out under its nearest catalogued base), and the
refusals workflows and DR activities raise by name. tests/test_errors.py checks that every
one of them is here."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Meaning(StrEnum):
    """What a failure says to the caller, whatever raised it."""

    NOT_FOUND = "not_found"  # what the request names does not exist
    CONFLICT = "conflict"  # it exists already, is in use, or is not in the state the operation needs
    BUSY = "busy"  # another operation holds it: the same request may work later
    INVALID = "invalid"  # the request contradicts the catalog, a rule, or what the driver can do
    UNAVAILABLE = "unavailable"  # a worker, a site or a guest did not answer (in time)
    DAMAGED = "damaged"  # stored data fails its checks (a chunk, a manifest)
    FAILED = "failed"  # anything else: the message says what went wrong


class ErrorType(NamedTuple):
    meaning: Meaning
    retryable: bool = False


_M = Meaning
ERRORS: dict[str, ErrorType] = {
    # drivers/base.py (NotFound, AlreadyExists: the catalog's too; InvalidState: the workflows' refusal)
    "DriverError": ErrorType(_M.FAILED),
    "NotFound": ErrorType(_M.NOT_FOUND),
    "AlreadyExists": ErrorType(_M.CONFLICT),
    "InvalidState": ErrorType(_M.CONFLICT),
    "ResourceLocked": ErrorType(_M.BUSY, retryable=True),
    "Unsupported": ErrorType(_M.INVALID),
    "GuestToolsMissing": ErrorType(_M.INVALID),
    "OperationTimeout": ErrorType(_M.UNAVAILABLE, retryable=True),
    "ClusterUnreachable": ErrorType(_M.UNAVAILABLE, retryable=True),  # its manager (AOC) may come back
    "OutOfRange": ErrorType(_M.INVALID),
    "InvalidName": ErrorType(_M.INVALID),
    # drivers/qcow2/images.py (qemu-img failed: a disk error or a lock may pass, so retried)
    "ImageError": ErrorType(_M.FAILED, retryable=True),
    # drivers/catalog/errors.py (StateConflict: the DR workflows' refusal too)
    "CatalogError": ErrorType(_M.FAILED),
    "InUse": ErrorType(_M.CONFLICT),
    "StateConflict": ErrorType(_M.CONFLICT),
    "ConcurrentChange": ErrorType(_M.BUSY, retryable=True),
    # drivers/repository/errors.py
    "RepositoryError": ErrorType(_M.FAILED),
    "RepositoryNotFound": ErrorType(_M.NOT_FOUND),
    "RepositoryExists": ErrorType(_M.CONFLICT),
    "UnsupportedFormat": ErrorType(_M.INVALID),
    "PointNotFound": ErrorType(_M.NOT_FOUND),
    "PointExists": ErrorType(_M.CONFLICT),
    "PointBusy": ErrorType(_M.BUSY),  # the base of a running backup: that backup decides, not a retry
    "RepositoryLocked": ErrorType(_M.BUSY, retryable=True),
    "CorruptChunk": ErrorType(_M.DAMAGED),
    "CorruptManifest": ErrorType(_M.DAMAGED),
    "SourceChanged": ErrorType(_M.FAILED),
    "EncryptionError": ErrorType(_M.FAILED),  # a missing or wrong key: the message says which
    # drivers/transport/client.py: the remote site refused, did not answer, or failed for now
    "TransportError": ErrorType(_M.FAILED),
    "TransportUnreachable": ErrorType(_M.UNAVAILABLE, retryable=True),
    "TransportTransient": ErrorType(_M.UNAVAILABLE, retryable=True),
    # requests: activities/errors.py's InvalidRequest (the Admin workflow's refusal too), bad input
    "InvalidRequest": ErrorType(_M.INVALID),
    "PointDamaged": ErrorType(_M.DAMAGED),  # a restore of a point verify marked DAMAGED
    "IllegalTransition": ErrorType(_M.CONFLICT),
    "WeakSecret": ErrorType(_M.INVALID),
    "ValidationError": ErrorType(_M.INVALID),
    "KeyError": ErrorType(_M.INVALID),
    "ValueError": ErrorType(_M.INVALID),
    # the DR workflows' refusals about the source VM (two running copies are never allowed)
    "SourceRunning": ErrorType(_M.CONFLICT),
    "SourceNotStopped": ErrorType(_M.CONFLICT),
    "SourceUnknown": ErrorType(_M.UNAVAILABLE),
    "TargetUnreachable": ErrorType(_M.UNAVAILABLE),  # a failover's target site did not answer: nothing stopped
}


def non_retryable_types() -> list[str]:
    """The types no retry can fix, in catalogue order (a retry policy's non_retryable_error_types)."""
    return [name for name, t in ERRORS.items() if not t.retryable]


def meaning_of(type_name: str | None) -> Meaning | None:
    """The meaning of a catalogued type; None for a type abdr does not raise."""
    found = ERRORS.get(type_name or "")
    return found.meaning if found else None
