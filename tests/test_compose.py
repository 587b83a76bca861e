"""docker-compose.yml is valid by the Compose specification's JSON schema (a real
validator), runs the same roles as `make up`, ships no default secret (it refuses to start
without them), publishes no Temporal port and nothing beyond loopback; its database init
script runs for real against the local PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from models import search_attributes

ROOT = Path(__file__).resolve().parents[1]
CHECK = str(Path(sys.executable).parent / "check-jsonschema")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHECK, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_is_valid() -> None:
    r = validate(ROOT / "docker-compose.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    doc["services"]["abdr-worker"]["enviroment"] = {"X": "1"}  # a typo the schema must catch
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(doc))
    assert validate(bad).returncode != 0


def test_compose_runs_what_make_up_runs() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"temporal", "temporal-ui", "postgresql", "abdr-worker", "abdr-worker-dr",
            "register-search-attributes"} <= set(services)
    assert "127.0.0.1:8233:8080" in services["temporal-ui"]["ports"]  # the UI where `make up` puts it
    script = " ".join(services["register-search-attributes"]["command"])
    assert all(k.name in script for k in search_attributes.ALL)
    worker = services["abdr-worker"]
    assert worker["command"][:2] == ["python", "worker.py"]
    assert worker["environment"]["ABDR_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert worker["environment"]["ABDR_DATABASE_URL"].startswith("postgresql://")
    # The same sites as `make up` (ABDR_SITE and ABDR_EXTRA_SITES' defaults), one worker each.
    from starter.runtime.settings import Settings

    defaults = Settings()
    dr = services["abdr-worker-dr"]
    assert worker["environment"]["ABDR_SITE"] == defaults.site
    assert dr["command"] == ["python", "worker.py", "--site", defaults.extra_sites[0], "--no-workflows"]
    assert dr["environment"]["ABDR_TRANSPORT_TOKEN"] == worker["environment"]["ABDR_TRANSPORT_TOKEN"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for top in ("models", "workflows", "activities", "drivers", "starter", "worker.py"):
        assert f"COPY {top}" in dockerfile


# -- exposure ---------------------------------------------------------------------------------
# Compose's interpolation (https://docs.docker.com/reference/compose-file/interpolation/):
# `$$` is a literal `$`; `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`.
INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}")
SECRET_KEY = re.compile(r"TOKEN|PASSWORD|PWD|SECRET|KEY", re.I)


class Refused(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        val = env.get(name)
        unset = val is None or (op is not None and op.startswith(":") and val == "")
        if op and op.endswith("?") and unset:
            raise Refused(arg or f"{name} is required")
        if op and op.endswith("-") and unset:
            return arg
        return val or ""
    return INTERPOLATION.sub(one, value)


def environments(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(svc, key, str(val)) for svc, body in doc["services"].items()
            for key, val in (body.get("environment") or {}).items()]


SECRETS = {"ABDR_TRANSPORT_TOKEN": "tt-" + uuid.uuid4().hex, "ABDR_API_TOKEN": "at-" + uuid.uuid4().hex,
           "ABDR_DB_PASSWORD": "db-" + uuid.uuid4().hex, "TEMPORAL_DB_PASSWORD": "tp-" + uuid.uuid4().hex}


def test_compose_has_no_default_secret_and_refuses_to_start_without_them() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = environments(doc)
    secret_values = [(svc, key, val) for svc, key, val in env
                     if SECRET_KEY.search(key) or re.search(r"://[^/@:]+:[^/@]+@", val)]
    assert {k for _, k, _ in secret_values} >= {"ABDR_TRANSPORT_TOKEN", "ABDR_API_TOKEN", "ABDR_DATABASE_URL",
                                                 "POSTGRES_PASSWORD", "POSTGRES_PWD", "ABDR_DB_PASSWORD"}
    for svc, key, val in secret_values:
        # Without the variables set, every secret refuses to render (compose refuses to start)...
        with pytest.raises(Refused, match="set "):
            interpolate(val, {})
        # ...and set, the value is exactly what the operator chose: no default hides anywhere.
        rendered = interpolate(val, SECRETS)
        assert any(secret in rendered for secret in SECRETS.values()), (svc, key, rendered)
        assert "change-me" not in val and not re.search(r"\$\{[^}]*:?-", val), (svc, key, val)
    # The one generated worker setting the sites share: the same secret in both workers.
    services = doc["services"]
    assert services["abdr-worker-dr"]["environment"]["ABDR_TRANSPORT_TOKEN"] == \
        services["abdr-worker"]["environment"]["ABDR_TRANSPORT_TOKEN"]
    # The init script does not carry a password of its own either.
    assert "PASSWORD 'abdr'" not in (ROOT / "deploy" / "postgres-init.sh").read_text()


def published(port: str | int | dict) -> tuple[str, int]:
    """(host ip, container port) of a `ports:` entry."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "0.0.0.0")), int(port["target"])
    parts = str(port).split("/")[0].split(":")
    host_ip = parts[0] if len(parts) == 3 else "0.0.0.0"
    return host_ip, int(parts[-1])


def test_compose_publishes_no_temporal_port_and_only_on_loopback() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    ports = [(svc, *published(p)) for svc, body in doc["services"].items() for p in body.get("ports", [])]
    assert "ports" not in doc["services"]["temporal"]
    assert not [p for p in ports if p[2] == 7233], ports  # anyone reaching 7233 can start any workflow
    assert all(host == "127.0.0.1" for _, host, _ in ports), ports
    # The UI cannot start or terminate workflows (that too would bypass the API's token).
    assert doc["services"]["temporal-ui"]["environment"]["TEMPORAL_DISABLE_WRITE_ACTIONS"] == "true"
    # The REST API (the token-guarded way in) is there, and asks for its token.
    api = doc["services"]["abdr-api"]
    assert api["command"][:2] == ["abdr", "api"] and "ABDR_API_TOKEN" in api["environment"]


def test_postgres_init_script_creates_the_role_with_the_given_password() -> None:
    """The script the postgres image runs, run against the local server (as its superuser),
    under a throwaway role and database name."""
    name = f"abdr_init_{uuid.uuid4().hex[:10]}"
    password = "pw-" + uuid.uuid4().hex
    env = {**os.environ, "ABDR_DB_PASSWORD": password, "ABDR_DB_USER": name, "ABDR_DB_NAME": name,
           "POSTGRES_USER": "postgres", "PGHOST": "127.0.0.1", "PGPORT": "5432"}
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    try:
        r = subprocess.run(["sh", str(ROOT / "deploy" / "postgres-init.sh")], env=env, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert password not in r.stdout + r.stderr
        with psycopg.connect(admin) as conn:
            owner, = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            stored, = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
        assert owner == name and stored and stored.startswith("SCRAM-SHA-256$")
        # No password, no script: it refuses before touching the server.
        r = subprocess.run(["sh", str(ROOT / "deploy" / "postgres-init.sh")],
                           env={**env, "ABDR_DB_PASSWORD": ""}, capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "ABDR_DB_PASSWORD is not set" in r.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'DROP ROLE IF EXISTS "{name}"')
