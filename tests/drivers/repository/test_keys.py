"""Keys of encrypted repositories kept by a site's worker: found by the fingerprint the
repository's config records, refused when absent or wrong, never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.repository import EncryptionError, RepoKey, Repository, SyncMode
from drivers.repository.keys import install_key
from tests.drivers.repository.conftest import (
    CS,
    MiB,
    backup,
    make_content,
    restore_bytes,
    vm_config,
)


def test_a_worker_opens_an_encrypted_repository_with_the_key_in_its_key_dir(tmp_path: Path, disks) -> None:
    key, keys = RepoKey.generate(), tmp_path / "keys"
    install_key(keys, key)
    repo = Repository.init(tmp_path / "repo", chunk_size=CS, sync=SyncMode.NONE, key=key)
    content = bytes(make_content(1 * MiB, 61))
    p = backup(repo, vm_config(disk0=1 * MiB), {"disk0": disks("d", 1 * MiB, content)})
    again = Repository.open(repo.root, key_dir=keys)
    assert again.verify().ok and restore_bytes(again, p.id, "disk0", tmp_path) == content
    assert key.aead.hex() not in repr(key) and key.id.hex() not in repr(key)

    with pytest.raises(EncryptionError, match="is encrypted .* its key is not in"):
        Repository.open(repo.root, key_dir=tmp_path / "empty")
    with pytest.raises(EncryptionError, match="its key is not"):
        Repository.open(repo.root)
    with pytest.raises(EncryptionError, match="does not belong"):
        Repository.open(repo.root, key=RepoKey.generate())
    # A copy under any name in the key directory is found by its fingerprint.
    other = tmp_path / "other"
    other.mkdir()
    key.save(other / "vault.key")
    assert Repository.open(repo.root, key_dir=other).key.key_id == key.key_id  # type: ignore[union-attr]
