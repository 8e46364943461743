"""Settings precedence and the public import surface."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import evalhouse
import evalhouse.collector
import evalhouse.store
from evalhouse.config import load_settings
from evalhouse.errors import ConfigError


def test_flag_beats_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "evalhouse.toml"
    config.write_text("grpc_port = 5001\nhttp_port = 5002\nui_port = 5003\n")
    monkeypatch.setenv("EVALHOUSE_CONFIG", str(config))
    monkeypatch.setenv("EVALHOUSE_HTTP_PORT", "6002")
    monkeypatch.setenv("EVALHOUSE_UI_PORT", "6003")
    settings = load_settings(ui_port=7003)
    assert (settings.grpc_port, settings.http_port, settings.ui_port) == (5001, 6002, 7003)
    assert load_settings(data_dir=None).max_message_bytes == 16 * 1024 * 1024


def test_api_keys_from_environment_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALHOUSE_API_KEYS", "key-s3cret-1, key-s3cret-2")
    settings = load_settings()
    assert settings.api_key_values() == frozenset({"key-s3cret-1", "key-s3cret-2"})
    assert "s3cret" not in repr(settings)


def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALHOUSE_GRPC_PORT", "not-a-port")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert raised.value.setting == "grpc_port"
    assert "not-a-port" in str(raised.value)


def test_embedded_dsn_lives_under_the_data_dir(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert settings.dsn == f"chdb://{tmp_path.resolve() / 'clickhouse'}"
    assert settings.embedded
    server = load_settings(clickhouse_url="http://user:pw@ch:8123/db")
    assert not server.embedded


def test_public_names_are_exactly_the_exported_ones() -> None:
    assert sorted(evalhouse.collector.__all__) == ["Addresses", "Collector"]
    assert set(evalhouse.store.__all__) == {
        "CALL_COLUMNS",
        "REVIEW_CLAIMS",
        "REVIEW_ITEMS",
        "REVIEW_QUEUES",
        "RULES",
        "RULE_BACKFILLS",
        "RULE_CHECKPOINTS",
        "RULE_SPEND",
        "RULE_TARGETS",
        "SCORE_COLUMNS",
        "SCORE_SOURCES",
        "ScoreRecord",
        "EVALUATOR_SCOPE",
        "EXPERIMENT_SPAN",
        "RANKED_METRICS",
        "ROWS_TABLE",
        "SUMMARIES_INPUT",
        "SUMMARY_CHECKPOINTS",
        "SUMMARY_COLUMNS",
        "TRACE_COLUMNS",
        "SHARDS",
        "STAGING_TABLE",
        "VERSIONS_TABLE",
        "envelope_class",
        "ingest_class",
        "ingest_item_class",
        "item_fields",
        "lenient_class",
        "lenient_item_class",
        "statements",
        "MIGRATIONS",
        "NORMALISED_COLUMNS",
        "SIGNALS",
        "Migration",
        "NormalisedColumn",
        "OtlpSink",
        "QueryRefused",
        "ReadonlyLimits",
        "SessionsBusy",
        "Signal",
        "SpanSink",
        "Store",
        "Topology",
        "in_ids",
        "migrate",
        "quote_identifier",
        "redact_dsn",
    }
    # evalhouse's own top-level names are checked in test_sdk_public.py.
    for module in (evalhouse.collector, evalhouse.store):
        public = {name for name in vars(module) if not name.startswith("_")}
        assert set(module.__all__) - {"__version__"} <= public


def test_only_the_evalhouse_namespace_is_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # What is installed, not the checkout: `python -m pytest` puts the repo root on sys.path,
    # where the folders themselves sit.
    root = Path(__file__).resolve().parent.parent
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != root])
    for name in ("collector", "evaluators", "instrumentation", "surfaces"):
        assert importlib.util.find_spec(name) is None, name
        assert importlib.util.find_spec(f"evalhouse.{name}") is not None


def test_dsn_credentials_are_redacted() -> None:
    assert evalhouse.store.redact_dsn("https://bob:pw@ch:8443/db") == "https://ch:8443/db"
    assert evalhouse.store.redact_dsn("chdb:///data") == "chdb:///data"
