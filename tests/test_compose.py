"""docker-compose.yml is valid by the Compose specification's JSON schema (a real
validator), and runs the same roles as `make up`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    assert "8233:8080" in services["temporal-ui"]["ports"]  # the UI where `make up` puts it
    script = " ".join(services["register-search-attributes"]["command"])
    assert all(k.name in script for k in search_attributes.ALL)
    worker = services["abdr-worker"]
    assert worker["command"][:2] == ["python", "worker.py"]
    assert worker["environment"]["ABDR_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert worker["environment"]["ABDR_DATABASE_URL"].startswith("postgresql://")
    # The same sites as `make up` (ABDR_SITE and ABDR_EXTRA_SITES' defaults), one worker each.
    from starter.settings import Settings

    defaults = Settings()
    dr = services["abdr-worker-dr"]
    assert worker["environment"]["ABDR_SITE"] == defaults.site
    assert dr["command"] == ["python", "worker.py", "--site", defaults.extra_sites[0], "--no-workflows"]
    assert dr["environment"]["ABDR_TRANSPORT_TOKEN"] == worker["environment"]["ABDR_TRANSPORT_TOKEN"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for top in ("models", "workflows", "activities", "drivers", "starter", "worker.py"):
        assert f"COPY {top}" in dockerfile
