"""Secrets abdr is given (the transport token, the REST API token, the catalog's database
password): refused when empty or a well-known placeholder, and kept out of anything shown
(banners, logs, listings) by `redact_url`."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

# Values that appear in examples and old compose files: a deployment must choose its own.
PLACEHOLDERS = frozenset({"change-me", "changeme", "change_me", "secret", "password", "passw0rd", "token",
                          "default", "example", "abdr", "temporal", "postgres", "admin", "test", "xxx"})


class WeakSecret(ValueError):
    pass


def check_secret(value: str | None, what: str, setting: str) -> str:
    """`value` if it is a real secret; otherwise WeakSecret naming the setting to set."""
    if not value or not value.strip():
        raise WeakSecret(f"{what} is not set: set {setting} to a secret of your own")
    if value.strip().lower() in PLACEHOLDERS:
        raise WeakSecret(f"{what} is a well-known placeholder: set {setting} to a secret of your own")
    return value


def redact_url(url: str) -> str:
    """The URL with its password replaced by '***' (user, host and path stay readable)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def url_password(url: str) -> str | None:
    return urlsplit(url).password
