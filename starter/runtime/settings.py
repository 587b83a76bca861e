"""abdr's settings: one typed model read from `ABDR_*` environment variables and, optionally,
a YAML file named by `ABDR_CONFIG` (environment wins over the file)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from models.inventory import check_name
from models.queues import WORKFLOW_TASK_QUEUE, site_task_queue  # noqa: F401  (re-exported)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ABDR_", extra="forbid")

    data_dir: Path = Field(default=Path(".abdr"), description="State of the embedded stack.")
    database_url: str | None = Field(default=None, description="Default: SQLite in data_dir.")
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_ca: Path | None = None
    temporal_ui_url: str = Field(default="", description="Where links to runs point (default: the embedded "
                                                         "Web UI, http://localhost:<ABDR_UI_PORT>).")
    embedded_temporal: bool = Field(default=True, description="`abdr up` starts the dev server.")
    ui_port: int = Field(default=8233, ge=1, le=65535, description="Port of the embedded dev server's Web UI.")
    site: str = Field(default="default", description="The site this worker serves.")
    extra_sites: Annotated[list[str], NoDecode] = Field(
        default=["dr"], description="`abdr up` also runs these sites' activity workers in its process "
                                    "(comma-separated in ABDR_EXTRA_SITES; empty for none).")
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "INFO"
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    transport_listen: str = Field(default="127.0.0.1:0", description="host:port of this site's transport server.")
    transport_url: str = Field(default="", description="URL other sites reach it at (default: from listen).")
    transport_token: str = Field(default="", description="Shared secret of the sites' transport (default: a "
                                 "token generated once in data_dir/transport.token).")
    metrics_address: str = Field(default="", description="host:port for Prometheus metrics of a worker.")
    api_token: str = Field(default="", description="Bearer token of the REST API (`abdr api`).")
    api_max_request_bytes: int = Field(default=1 << 20, ge=1024, description="Largest request body the REST "
                                                                             "API reads (413 above).")
    transport_tls_cert: Path | None = None
    transport_tls_key: Path | None = None
    transport_ca: Path | None = None
    demo: bool = Field(default=True, description="`abdr up` seeds a demo cluster, VMs, repository and plan "
                                                 "when the catalog has no backup plan.")
    demo_libvirt: bool = Field(default=False, description="`abdr up` also boots a tiny real guest on this host's "
                                                          "libvirt (scripts/ensure-hypervisor.sh sets it up) and "
                                                          "protects it with a backup plan.")
    demo_aoc: bool = Field(default=False, description="`abdr up` also starts two AOC simulators (site ABDR_SITE "
                                                      "and the first extra site), one cluster each, and seeds a "
                                                      "backup plan and a cross-site replication plan on them.")
    demo_aoc_ports: tuple[int, int] = Field(default=(8090, 8091), description="Ports of the AOC demo's two "
                                            "simulators on 127.0.0.1 (JSON, e.g. [8090, 8091]); kept across "
                                            "restarts, as the catalog's cluster endpoints name them.")
    demo_libvirt_dir: Path = Field(default=Path("/var/lib/libvirt/images/abdr/demo"),
                                   description="The libvirt demo's cluster directory and guest image (QEMU must "
                                               "reach it: keep it under /var/lib/libvirt/images).")
    repository_key_dir: Path | None = Field(
        default=None, description="Where this site's worker keeps the key files of encrypted repositories "
                                  "(default: data_dir/keys). Keep a copy of each key elsewhere too.")

    @field_validator("extra_sites", mode="before")
    @classmethod
    def _sites(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s.strip() for s in v.split(",") if s.strip()]
        if isinstance(v, list):
            v = [check_name(s, "extra site") if isinstance(s, str) else s for s in dict.fromkeys(v)]
        return v

    @field_validator("transport_token", "api_token")
    @classmethod
    def _secret(cls, v: str, info: Any) -> str:
        # Empty is allowed here (a generated transport token; `abdr api` refuses no token);
        # a well-known placeholder never is.
        from drivers.secrets import check_secret

        return check_secret(v, info.field_name, f"ABDR_{info.field_name.upper()}") if v else v

    @field_validator("database_url")
    @classmethod
    def _db_password(cls, v: str | None) -> str | None:
        from drivers.secrets import PLACEHOLDERS, url_password

        password = url_password(v) if v else None
        if password is not None and password.lower() in PLACEHOLDERS:
            raise ValueError("the database password in ABDR_DATABASE_URL is a well-known placeholder: "
                             "choose your own")
        return v

    @field_validator("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca", "transport_tls_cert",
                     "transport_tls_key", "transport_ca")
    @classmethod
    def _exists(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a readable file")
        return v

    @model_validator(mode="after")
    def _ui_url_follows_port(self) -> "Settings":
        # Links follow ABDR_UI_PORT unless the UI lives elsewhere (ABDR_TEMPORAL_UI_URL).
        if not self.temporal_ui_url:
            self.temporal_ui_url = f"http://localhost:{self.ui_port}"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("ABDR_CONFIG")
        if config:
            if not Path(config).is_file():
                raise ValueError(f"ABDR_CONFIG={config} is not a readable file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config))
        return tuple(sources)

    def transport_secret(self) -> str:
        """The transport token: configured, or generated once and kept in the data dir."""
        if self.transport_token:
            return self.transport_token
        path = self.data_dir / "transport.token"
        if not path.exists():
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def repository_keys(self) -> Path:
        return self.repository_key_dir or self.data_dir / "keys"

    @property
    def catalog_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'catalog.db'}"

    @property
    def temporal_port(self) -> int:
        return int(self.temporal_address.rsplit(":", 1)[1])

    def tls_config(self) -> Any:
        """A temporalio TLSConfig when any TLS file is set, else False."""
        if not (self.temporal_tls_cert or self.temporal_tls_ca):
            return False
        from temporalio.service import TLSConfig

        def read(p: Path | None) -> bytes | None:
            return p.read_bytes() if p else None

        return TLSConfig(
            server_root_ca_cert=read(self.temporal_tls_ca),
            client_cert=read(self.temporal_tls_cert),
            client_private_key=read(self.temporal_tls_key),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
