"""Optional client-side authenticated encryption (AES-256-GCM via the `cryptography` package,
imported only when a repository uses it).

A key file holds two independent 32-byte keys: `aead` encrypts chunk payloads and manifests,
`id` keys BLAKE3 so chunk names (digests) do not reveal whether a given plaintext is stored.
The key file lives outside the repository; without it nothing can be read.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from drivers.repository.errors import EncryptionError

NONCE = 12
TAG = 16
CIPHER = "aes-256-gcm"


@dataclass(frozen=True)
class RepoKey:
    aead: bytes = field(repr=False)  # never in a repr: reprs end up in logs and tracebacks
    id: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> "RepoKey":
        return cls(aead=secrets.token_bytes(32), id=secrets.token_bytes(32))

    @classmethod
    def load(cls, path: Path) -> "RepoKey":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(aead=bytes.fromhex(raw["aead"]), id=bytes.fromhex(raw["id"]))
        except OSError as e:
            # from None: a caller shows a failure chain's innermost message, which would be the errno string.
            raise EncryptionError(f"cannot read repository key file {path} ({(e.strerror or str(e)).lower()}): "
                                  "give the path of the key file as the site's worker sees it") from None
        except (ValueError, KeyError, TypeError) as e:
            raise EncryptionError(f"repository key file {path} is not an abdr key file ({e}): give the key file "
                                  "abdr wrote when the repository was created") from None

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": 1, "cipher": CIPHER, "aead": self.aead.hex(), "id": self.id.hex()}, f)

    @property
    def key_id(self) -> str:
        """Fingerprint stored in the repo config so a wrong key fails at open, not at restore."""
        return blake3.blake3(b"abdr key check", key=self.id).hexdigest()[:32]


class Cipher:
    """AEAD seal/open bound to one key. Thread-safe (AESGCM objects are)."""

    def __init__(self, key: RepoKey) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise EncryptionError(
                "this repository is encrypted but the 'cryptography' package is not installed"
            ) from e
        self._aead = AESGCM(key.aead)

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE)  # random 96-bit nonces: fine below ~2^32 messages/key
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        if len(sealed) < NONCE + TAG:
            raise EncryptionError("sealed data too short")
        try:
            return self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], aad)
        except InvalidTag:
            raise EncryptionError("authentication failed (wrong key or tampered data)") from None
