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
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from evalhouse.errors import ConfigError

if TYPE_CHECKING:
    from evalhouse.store import ReadonlyLimits

__all__ = ["AggregateScore", "RuleSpec", "Settings", "load_settings"]

CONFIG_FILE_ENV = "EVALHOUSE_CONFIG"


class AggregateScore(BaseModel):
    """A score made of other scores of the same row: it appears as a score everywhere.

    ``weighted_average`` uses the weights; ``min`` / ``max`` ignore them. A row gets the
    aggregate only when it has every named score (a failed component leaves it out).

    >>> AggregateScore(method="min", scores=["accuracy", "safety"]).scores
    {'accuracy': 1.0, 'safety': 1.0}
    """

    method: Literal["weighted_average", "min", "max"] = "weighted_average"
    scores: dict[str, float] = Field(min_length=1)

    @field_validator("scores", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return dict.fromkeys(value, 1.0)
        return value

    @field_validator("scores")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if any(weight < 0 for weight in value.values()) or sum(value.values()) <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return value


class RuleSpec(BaseModel):
    """An online evaluation rule: which production targets to score, how often, with what.

    The same fields in ``POST /api/rules``, ``evalhouse rules add`` and ``[[rules]]`` tables
    of evalhouse.toml (``docs/online.md``). A rule with no ``delay_s`` takes
    ``rules_delay_seconds`` when it is saved.

    >>> RuleSpec(name="support-quality", filter="tag:support", scorers=["llm_judge"]).sample
    1.0
    """

    model_config = {"extra": "forbid"}

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$",
        description="Unique name: letters, digits and _ . : - (at most 100).",
    )
    scope: Literal["span", "trace", "session"] = Field(
        "trace",
        description="What one score is about: a span (model calls unless `where` says "
        "otherwise), a trace, or a session.",
    )
    filter: str = Field(
        "",
        max_length=4000,
        description="The explorer's filter language over the trace (tag:support model:gpt-4o "
        "-status:error ...); for a span, over the span's trace; for a session, any trace.",
    )
    where: str = Field(
        "",
        max_length=4000,
        description="SQL boolean over the scope's columns: the traces view (trace, session) "
        "or otel_traces (span); checked like the explorer's where.",
    )
    sample: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Fraction of matched targets scored, chosen by a hash of the rule name and "
        "the target: a re-run picks the same ones.",
    )
    scorers: list[str | dict[str, Any]] = Field(
        min_length=1,
        description="Scorers by any name the registry resolves (exact_match, llm_judge:"
        "helpfulness, module:function, autoevals:Name), or {name = ..., options = {...}}.",
    )
    mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Where input, output, expected and metadata come from: an attribute name, "
        "or root, span, messages, none. Default: the root's value or the model calls' "
        "messages (trace), the span's (span), the turns (session).",
    )
    budget_usd_per_day: float | None = Field(
        None,
        gt=0,
        description="Most the rule's LLM judges may spend per UTC day; targets over it are "
        "skipped (counted in the rule's status).",
    )
    delay_s: float | None = Field(
        None,
        ge=0,
        le=86_400,
        description="Quiet period: a trace is scored once its root span ended and no span "
        "arrived for this long (a session: no span for this long).",
    )
    enabled: bool = Field(True, description="A disabled rule scores nothing; scores stay.")


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
    # Listener limits: what a stalled, slow or hostile client may hold, and for how long
    # (evalhouse/asgi.py, collector/_grpc.py; docs/deploy.md "Listener limits").
    http_header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="An HTTP client must send a request's headers within this many seconds of "
        "connecting (or of the request's first byte on a kept-alive connection); otherwise it "
        "is answered 408 and disconnected.",
    )
    http_body_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="An HTTP request's body must arrive whole within this many seconds of its "
        "headers (16 MiB in 60 s needs ~2.3 Mbit/s); otherwise 408 and disconnected.",
    )
    http_idle_timeout_seconds: int = Field(
        30, ge=1, description="A kept-alive HTTP connection without a request this long is closed."
    )
    api_max_body_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        description="Largest request body the HTTP API accepts (413 beyond); OTLP bodies are "
        "capped by max_message_bytes.",
    )
    grpc_message_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="An OTLP/gRPC call must deliver its request message within this many "
        "seconds of opening; otherwise it ends with DEADLINE_EXCEEDED and frees its slot.",
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
    writer_threads: int = Field(
        2,
        gt=0,
        description="Inserts into ClickHouse running at once, each on its own batches (two "
        "keep both cores of a 2-core machine busy; benchmarks/ingest.py).",
    )
    dedup_window_seconds: int = Field(
        900, ge=0, description="How long a request's digest is remembered to drop retries."
    )
    metrics_log_interval: float = Field(
        60.0, gt=0, description="Seconds between the collector's self-metrics log lines."
    )
    evaluator_enabled: bool = Field(
        True, description="Run the evaluator daemon inside `evalhouse serve`."
    )
    evaluator_quiet_seconds: float = Field(
        3.0,
        ge=0,
        description="A trace becomes an experiment row once none of its spans was stored for "
        "this long; spans arriving later recompute the row.",
    )
    explorer_quiet_seconds: float = Field(
        2.0,
        ge=0,
        description="A trace is summarized for the traces explorer once none of its spans was "
        "stored for this long (it shows in GET /api/traces a poll later); late spans "
        "summarize it again.",
    )
    rules_delay_seconds: float = Field(
        10.0,
        ge=0,
        description="Default quiet period of an online rule (its delay_s): a trace is scored "
        "once its root span ended and no span of it was stored for this long.",
    )
    rules: list[RuleSpec] = Field(
        default_factory=list,
        description="Online evaluation rules, as [[rules]] tables in evalhouse.toml (the "
        "fields of POST /api/rules); saved when serve or the evaluator starts, a change "
        "making a new version. Env: JSON list.",
    )
    evaluator_poll_seconds: float = Field(
        1.0, gt=0, description="Seconds between the evaluator's looks for new or changed traces."
    )
    evaluator_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Evaluator workers in this process; workers of every process share the "
        "work through leases in ClickHouse.",
    )
    evaluator_worker_id: str | None = Field(
        None,
        description="Stable name of this evaluator process (a pod name, say): restarted, it "
        "keeps its leases instead of waiting for them to expire. Must be unique. Default: "
        "host and process id (fixed on the embedded store, which one process owns).",
    )
    evaluator_lease_seconds: float = Field(
        120.0,
        gt=0,
        description="Length of a work lease; at least twice evaluator_scorer_timeout. A stopped "
        "worker's share is taken over within two leases (about 200 s by default).",
    )
    evaluator_scorer_timeout: float = Field(
        60.0, gt=0, description="Seconds one scorer call may take before it is a scorer error."
    )
    evaluator_scorer_concurrency: int = Field(
        32, ge=1, le=4096, description="Calls in flight per scorer (each scorer has its own)."
    )
    evaluator_scorers: dict[str, list[str | dict[str, Any]]] = Field(
        default_factory=dict,
        description="Scorers the evaluator runs, by experiment-name glob: in evalhouse.toml "
        '[evaluator_scorers] "summaries-*" = ["exact_match", {name = "llm_judge", options = '
        '{model = "gpt-4o-mini"}}]; env: JSON.',
    )

    aggregate_scores: dict[str, AggregateScore] = Field(
        default_factory=dict,
        description="Scores computed from other scores, shown as scores everywhere: in "
        'evalhouse.toml [aggregate_scores] overall = {method = "weighted_average", scores = '
        "{accuracy = 2, fluency = 1}}; method weighted_average, min or max; env: JSON.",
    )
    compare_alpha: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Significance level of experiment comparisons (and 1 - confidence level "
        "of their intervals); `evalhouse compare --alpha` overrides it.",
    )
    # Practical significance of metric changes in comparisons (evaluators/results/_thresholds.py):
    # a change below these is "unchanged", however small its p-value.
    compare_duration_min_relative: float = Field(
        0.10,
        ge=0,
        description="A duration metric (task, LLM time) counts as improved or regressed only "
        "when its mean changed by at least this fraction of the baseline's mean.",
    )
    compare_duration_min_ms: float = Field(
        50.0,
        ge=0,
        description="A duration metric counts as improved or regressed only when its mean "
        "also changed by at least this many milliseconds.",
    )
    compare_tokens_min_relative: float = Field(
        0.05,
        ge=0,
        description="A token count counts as improved or regressed only when its mean changed "
        "by at least this fraction of the baseline's mean.",
    )
    compare_cost_min_relative: float = Field(
        0.05,
        ge=0,
        description="Cost counts as improved or regressed only when its mean changed by at "
        "least this fraction of the baseline's mean.",
    )

    # Read-only SQL: user SQL (POST /api/sql, evalhouse sql) and the results API.
    readonly_clickhouse_url: str | None = Field(
        None,
        description="DSN of a read-only ClickHouse user for user SQL and the results API "
        "(server mode; a settings profile with readonly = 2 and limits, grants on evalhouse's "
        "tables only: docs/deploy.md). Default: the main DSN with readonly = 2 per query.",
    )
    sql_max_execution_seconds: float = Field(
        30.0, gt=0, description="Longest a read-only query may run before it is cancelled."
    )
    sql_max_memory_bytes: int = Field(
        2 * 1024**3, gt=0, description="Most memory one read-only query may use."
    )
    sql_max_result_rows: int = Field(
        1_000_000, gt=0, description="Most rows a read-only query may return."
    )
    sql_max_result_bytes: int = Field(
        1024**3, gt=0, description="Most bytes a read-only query may return."
    )
    sql_sessions: int = Field(
        4,
        ge=1,
        le=64,
        description="Read-only sessions (queries at once); a request waits up to "
        "sql_wait_seconds for one, then gets 503 with Retry-After.",
    )
    sql_wait_seconds: float = Field(
        10.0, gt=0, description="How long a read-only query waits for a free session."
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

    def readonly_limits(self) -> ReadonlyLimits:
        """The limits of every read-only query (``sql_*``)."""
        from evalhouse.store import ReadonlyLimits

        return ReadonlyLimits(
            max_execution_seconds=self.sql_max_execution_seconds,
            max_memory_bytes=self.sql_max_memory_bytes,
            max_result_rows=self.sql_max_result_rows,
            max_result_bytes=self.sql_max_result_bytes,
            sessions=self.sql_sessions,
            wait_seconds=self.sql_wait_seconds,
        )

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
