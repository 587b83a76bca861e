"""The repository's error hierarchy. Messages name the object (path, point, digest) at fault,
because they end up in Temporal's UI and in CLI output, read by someone on call."""

from __future__ import annotations


class RepositoryError(Exception):
    """Base of every error raised by the repository."""


class RepositoryNotFound(RepositoryError):
    """No repository (no config file) at the path."""


class RepositoryExists(RepositoryError):
    """init() on a path that already holds a repository."""


class UnsupportedFormat(RepositoryError):
    """The repository was written by a newer format version, or is not ours."""


class PointNotFound(RepositoryError):
    """No restore point with that id (or no such disk in it)."""


class PointExists(RepositoryError):
    """A restore point with that id is already committed."""


class PointBusy(RepositoryError):
    """The point is the base of a running backup and cannot be deleted now."""


class RepositoryLocked(RepositoryError):
    """Another maintenance job (gc, prune, ...) holds the repository's maintenance lock."""

    def __init__(self, message: str, holder: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.holder = holder or {}


class CorruptChunk(RepositoryError):
    """A chunk file is missing, torn, fails to decompress, or does not hash to its name."""

    def __init__(self, digest: str, problem: str, detail: str = "") -> None:
        super().__init__(f"chunk {digest}: {problem}{': ' + detail if detail else ''}")
        self.digest = digest
        self.problem = problem


class CorruptManifest(RepositoryError):
    """A manifest or staging journal cannot be parsed."""


class SourceChanged(RepositoryError):
    """A chunk re-read from the source no longer hashes as it did: the source is not a stable
    snapshot, so the backup cannot be completed consistently."""


class EncryptionError(RepositoryError):
    """Missing or wrong key, or encryption support unavailable."""
