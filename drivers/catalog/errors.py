"""Catalog errors; the message is meant for users as is."""

from __future__ import annotations


class CatalogError(Exception):
    """Base of catalog errors."""


class NotFound(CatalogError):
    pass


class AlreadyExists(CatalogError):
    pass


class InUse(CatalogError):
    pass


class StateConflict(CatalogError):
    """The object is not in the state (or claim) the change expects: another operation
    got there first. Retrying cannot fix it."""


class ConcurrentChange(CatalogError):
    """The row changed between read and write; a retry reads it again."""
