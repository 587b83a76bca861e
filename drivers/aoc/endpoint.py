"""An AOC cluster's endpoint, `https://HOST[:PORT]#CLUSTER_ID`, and the credentials and CA
that reach it: ABDR_AOC_USERNAME / ABDR_AOC_PASSWORD / ABDR_AOC_SOURCE (LOCAL by default)
or a secrets file (ABDR_AOC_SECRETS_FILE: JSON `{"<https://HOST[:PORT]>": {"username",
"password", "source", "ca_file"?}}`, for sites with different AOCs); the CA that signs an
AOC's certificate is that entry's `ca_file`, else ABDR_AOC_CA_FILE, else the system's CAs.
Passwords are never shown."""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from drivers.base import DriverError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = "LOCAL"


def parse(endpoint: str, cluster: str) -> tuple[str, str]:
    """`https://HOST#CLUSTER_ID` -> (base URL, AOC cluster id)."""
    url, _, cluster_id = endpoint.partition("#")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise DriverError(f"AOC cluster {cluster!r}: endpoint {endpoint!r} is not https://HOST[:PORT]#CLUSTER_ID")
    if not cluster_id:
        raise DriverError(f"AOC cluster {cluster!r}: endpoint {endpoint!r} names no AOC cluster id "
                          "(give --cluster-id, or write it after '#')")
    return url.rstrip("/"), cluster_id


def join(endpoint: str, cluster_id: str) -> str:
    if "#" in endpoint:
        raise DriverError(f"endpoint {endpoint!r} names a cluster id already (after '#'); drop --cluster-id")
    return f"{endpoint.rstrip('/')}#{cluster_id}"


def _entry(base_url: str, cluster: str) -> dict[str, str]:
    """The secrets file's entry for this AOC, or {}."""
    secrets = os.environ.get("ABDR_AOC_SECRETS_FILE")
    if not secrets:
        return {}
    try:
        return dict(json.loads(Path(secrets).read_text()).get(base_url) or {})
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise DriverError(f"AOC cluster {cluster!r}: cannot read ABDR_AOC_SECRETS_FILE {secrets}: {e}") from None


def credentials(base_url: str, cluster: str) -> Credentials:
    entry = _entry(base_url, cluster)
    if entry.get("username"):
        return Credentials(str(entry["username"]), str(entry.get("password", "")), str(entry.get("source", "LOCAL")))
    user, password = os.environ.get("ABDR_AOC_USERNAME"), os.environ.get("ABDR_AOC_PASSWORD")
    if not user or not password:
        raise DriverError(f"AOC cluster {cluster!r}: no credentials for {base_url}: set ABDR_AOC_USERNAME and "
                          "ABDR_AOC_PASSWORD (and ABDR_AOC_SOURCE), or an entry in ABDR_AOC_SECRETS_FILE")
    return Credentials(user, password, os.environ.get("ABDR_AOC_SOURCE") or "LOCAL")


def ca_file(base_url: str, cluster: str) -> str | None:
    """The CA file named for this AOC (its secrets entry's `ca_file`, else ABDR_AOC_CA_FILE)."""
    return _entry(base_url, cluster).get("ca_file") or os.environ.get("ABDR_AOC_CA_FILE") or None


def verify(base_url: str, cluster: str) -> ssl.SSLContext | bool:
    """What TLS verification trusts: the CA file named (checked now: a clear error, not a
    failed handshake later), else the system's CAs."""
    ca = ca_file(base_url, cluster)
    if not ca:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise DriverError(f"AOC cluster {cluster!r}: the CA file {ca} (for {base_url}) is not a readable PEM "
                          f"certificate: {e}") from None


def trusted(base_url: str, cluster: str) -> str:
    """Which CAs a refused certificate was checked against, for the error."""
    ca = ca_file(base_url, cluster)
    return f"the CA file {ca}" if ca else "the system's CAs (name the AOC's CA in ABDR_AOC_CA_FILE)"
