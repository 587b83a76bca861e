"""An AOC cluster's endpoint, `https://HOST[:PORT]#CLUSTER_ID`, and the credentials and CA
that reach it: ABDR_AOC_USERNAME / ABDR_AOC_PASSWORD / ABDR_AOC_SOURCE (LOCAL by default)
or a secrets file (ABDR_AOC_SECRETS_FILE: JSON `{"<https://HOST[:PORT]>": {"username",
"password", "source"}}`, for sites with different AOCs); ABDR_AOC_CA_FILE names the CA that
signs the AOC's certificate (the system's CAs otherwise). Passwords are never shown."""

from __future__ import annotations

import json
import os
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


def credentials(base_url: str, cluster: str) -> Credentials:
    secrets = os.environ.get("ABDR_AOC_SECRETS_FILE")
    if secrets:
        try:
            entry = json.loads(Path(secrets).read_text()).get(base_url)
        except (OSError, ValueError) as e:
            raise DriverError(f"AOC cluster {cluster!r}: cannot read ABDR_AOC_SECRETS_FILE {secrets}: {e}") from None
        if entry:
            return Credentials(str(entry["username"]), str(entry["password"]), str(entry.get("source", "LOCAL")))
    user, password = os.environ.get("ABDR_AOC_USERNAME"), os.environ.get("ABDR_AOC_PASSWORD")
    if not user or not password:
        raise DriverError(f"AOC cluster {cluster!r}: no credentials for {base_url}: set ABDR_AOC_USERNAME and "
                          "ABDR_AOC_PASSWORD (and ABDR_AOC_SOURCE), or an entry in ABDR_AOC_SECRETS_FILE")
    return Credentials(user, password, os.environ.get("ABDR_AOC_SOURCE") or "LOCAL")


def verify() -> str | bool:
    """What TLS verification trusts: the CA file named, else the system's CAs."""
    return os.environ.get("ABDR_AOC_CA_FILE") or True
