"""Every setting, declared once: name, type, default, environment variable, meaning.

Precedence: explicit argument (CLI flag) > ``EVALHOUSE_*`` environment variable >
``evalhouse.toml`` in the working directory > default. The server refuses to start on a bad
value with one clear line (see :func:`load_settings`).

>>> settings = load_settings(grpc_port=14317)
>>> settings.grpc_port
14317
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from evalhouse.errors import ConfigError

__all__ = ["Settings", "load_settings"]

CONFIG_FILE_ENV = "EVALHOUSE_CONFIG"


class Settings(BaseSettings):
    """The configuration table. Environment variable = ``EVALHOUSE_`` + upper-case name."""

    model_config = SettingsConfigDict(
        env_prefix="EVALHOUSE_", extra="ignore", toml_file="evalhouse.toml"
    )

    data_dir: Path = Field(
        Path(".evalhouse"), description="Where the embedded store, spool and state live."
    )
    clickhouse_url: str | None = Field(
        None,
        description="ClickHouse DSN: chdb:///dir (embedded) or http(s)://user:pass@host:8123/db. "
        "Default: the embedded store under data_dir/clickhouse.",
    )
    cluster: str | None = Field(
        None, description="ClickHouse cluster name: Replicated tables and ON CLUSTER DDL."
    )
    host: str = Field("127.0.0.1", description="Interface the listeners bind to.")
    grpc_port: int = Field(4317, ge=0, le=65535, description="OTLP/gRPC port.")
    http_port: int = Field(4318, ge=0, le=65535, description="OTLP/HTTP port.")
    ui_port: int = Field(8700, ge=0, le=65535, description="HTTP API and web UI port.")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Accepted API keys (Authorization: Bearer KEY or x-api-key: KEY) on every "
        "listener; empty = no authentication. Env: comma-separated.",
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024, gt=0, description="Largest OTLP request body accepted."
    )
    max_attribute_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        description="Longer attribute values are truncated, with a marker, and counted.",
    )
    spool_max_bytes: int = Field(
        4 * 1024**3,
        gt=0,
        description="Bytes of accepted-but-not-yet-stored data allowed on disk before the "
        "collector answers RESOURCE_EXHAUSTED / 429.",
    )
    wal_fsync: bool = Field(
        True, description="fsync the write-ahead log before acknowledging (power-loss safety)."
    )
    batch_max_spans: int = Field(
        25_000,
        gt=0,
        description="Most spans written to ClickHouse in one insert (25k measured best: "
        "larger inserts cost memory, smaller ones throughput; benchmarks/ingest.py).",
    )
    dedup_window_seconds: int = Field(
        900, ge=0, description="How long a request's digest is remembered to drop retries."
    )
    metrics_log_interval: float = Field(
        60.0, gt=0, description="Seconds between the collector's self-metrics log lines."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = os.environ.get(CONFIG_FILE_ENV, "evalhouse.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @property
    def dsn(self) -> str:
        """The ClickHouse DSN in force: the explicit one, else the embedded store."""
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    def api_key_values(self) -> frozenset[str]:
        return frozenset(key.get_secret_value() for key in self.api_keys)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; ``None`` overrides are ignored so unset CLI flags fall through.

    Raises :class:`ConfigError` naming the first bad setting.
    """
    explicit = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**explicit)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first["loc"]) or "?"
        raise ConfigError(name, f"{first['msg']} (got {first.get('input')!r})") from exc
