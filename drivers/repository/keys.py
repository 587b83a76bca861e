"""Where a site's worker keeps the keys of encrypted repositories: one key file per key in a
directory of its own (`ABDR_REPOSITORY_KEY_DIR`, default `<data dir>/keys`, mode 0700), named
by the key's fingerprint, so an encrypted repository's config says which file opens it.

The key never leaves the worker's host through abdr: requests carry the *path* of a key
file the worker reads, never its content, and nothing here logs or formats key bytes."""

from __future__ import annotations

import os
from pathlib import Path

from drivers.repository.crypto import RepoKey
from drivers.repository.errors import EncryptionError


def key_path(key_dir: Path, key_id: str) -> Path:
    return Path(key_dir) / f"{key_id}.key"


def find_key(key_dir: Path | None, key_id: str) -> RepoKey | None:
    """The key with fingerprint `key_id` in `key_dir`: its own file, else any `*.key` there
    (a key file copied in by hand under another name)."""
    if key_dir is None or not Path(key_dir).is_dir():
        return None
    own = key_path(key_dir, key_id)
    candidates = [own] if own.exists() else []
    candidates += [p for p in sorted(Path(key_dir).glob("*.key")) if p != own]
    for p in candidates:
        try:
            key = RepoKey.load(p)
        except EncryptionError:
            continue
        if key.key_id == key_id:
            return key
    return None


def install_key(key_dir: Path, key: RepoKey) -> Path:
    """Keep `key` in `key_dir` (idempotent). Returns the file's path."""
    key_dir = Path(key_dir)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = key_path(key_dir, key.key_id)
    try:
        key.save(path)
    except FileExistsError:
        if RepoKey.load(path).key_id != key.key_id:  # cannot happen unless edited by hand
            raise EncryptionError(f"key file {path} holds another key than its name says") from None
    else:
        os.chmod(path, 0o600)
    return path
