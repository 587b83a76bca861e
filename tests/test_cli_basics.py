"""CLI behaviour that every command shares: errors are one clear line and a non-zero exit,
never a traceback; settings come from ABDR_* variables and an optional YAML file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from starter.runtime.logging import configure_logging
from starter.runtime.settings import Settings

ABDR = str(Path(sys.executable).parent / "abdr")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ABDR, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def test_bad_setting_is_one_line(tmp_path: Path) -> None:
    r = run("status", env={"ABDR_LOG_FORMAT": "xml", "ABDR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "log_format" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_status_when_nothing_runs_says_so(tmp_path: Path) -> None:
    r = run("status", "--json", env={"ABDR_DATA_DIR": str(tmp_path), "ABDR_TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert report["healthy"] is False and report["temporal"]["ok"] is False
    assert report["catalog"]["ok"] is False and "no schema yet" in report["catalog"]["error"]


def test_settings_from_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "abdr.yaml"
    cfg.write_text("site: dr\ntemporal_namespace: prod\ndatabase_url: postgresql://u@db/abdr\n")
    monkeypatch.setenv("ABDR_CONFIG", str(cfg))
    monkeypatch.setenv("ABDR_TEMPORAL_NAMESPACE", "staging")  # the environment wins over the file
    s = Settings()
    assert (s.site, s.temporal_namespace, s.catalog_url) == ("dr", "staging", "postgresql://u@db/abdr")
    monkeypatch.setenv("ABDR_TEMPORAL_TLS_CA", str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="missing.pem is not a readable file"):
        Settings()


def test_default_catalog_is_sqlite_in_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABDR_DATA_DIR", str(tmp_path))
    assert Settings().catalog_url == f"sqlite:///{tmp_path / 'catalog.db'}"


def test_json_logs_carry_activity_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    record_extra = {"temporal_activity": {"activity_type": "transfer", "workflow_id": "backup/p/vm"}}
    logging.getLogger("temporalio.activity").info("progress", extra=record_extra)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "progress" and line["activity_type"] == "transfer"
    assert line["workflow_id"] == "backup/p/vm" and line["level"] == "info"
