"""One root exception for everything evalhouse raises on purpose.

Third-party errors are translated at the boundary with ``raise ... from exc`` so that
callers catch :class:`EvalhouseError` and still see the original cause.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataDirLocked",
    "EvalhouseError",
    "QueryError",
    "StoreUnavailable",
]


class EvalhouseError(Exception):
    """Base class: ``str(err)`` is one line saying what went wrong and what to do."""


class ConfigError(EvalhouseError):
    """A setting has a value evalhouse cannot use."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"invalid setting {setting}: {message}")
        self.setting = setting


class StoreUnavailable(EvalhouseError):
    """ClickHouse cannot be reached (server down, wrong DSN, network)."""

    def __init__(self, dsn: str, reason: str) -> None:
        super().__init__(
            f"ClickHouse at {dsn} is unreachable: {reason}; "
            "check that the server runs and the DSN "
            "(--clickhouse / EVALHOUSE_CLICKHOUSE_URL) is right"
        )
        self.dsn = dsn
        self.reason = reason


class DataDirLocked(EvalhouseError):
    """Another process owns the embedded store's data directory."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"data directory {path} is in use by another evalhouse process; "
            "stop it, or pass a different --data-dir"
        )
        self.path = path


class QueryError(EvalhouseError):
    """ClickHouse refused a query (syntax, unknown column, read-only violation...)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
