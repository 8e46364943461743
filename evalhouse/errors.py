"""One root exception for everything evalhouse raises on purpose.

Third-party errors are translated at the boundary with ``raise ... from exc`` so that
callers catch :class:`EvalhouseError` and still see the original cause.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "Conflict",
    "DataDirLocked",
    "EvalhouseError",
    "ExperimentAmbiguous",
    "ExperimentNotFound",
    "InvalidRequest",
    "NotFound",
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


class InvalidRequest(EvalhouseError):
    """A parameter or body the caller can fix: a filter, a key, a sort column, a format."""


class Conflict(EvalhouseError):
    """The request clashes with what exists (a rule or queue name already taken)."""


class NotFound(EvalhouseError):
    """The thing asked for does not exist (an experiment, a dataset, a version)."""


class ExperimentNotFound(NotFound):
    """No experiment has that id or name."""

    def __init__(self, reference: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"no experiment with id or name {reference!r}; list them with "
            "'evalhouse experiments list' (or GET /api/experiments)"
        )
        self.reference = reference


class ExperimentAmbiguous(EvalhouseError):
    """A name matches several runs where an operation must act on exactly one of them
    (re-scoring, repricing); ``runs`` holds each run's (id, start time), newest first."""

    def __init__(self, reference: str, runs: tuple[tuple[str, str], ...]) -> None:
        shown = ", ".join(f"{run_id} (started {started})" for run_id, started in runs[:10])
        more = f" and {len(runs) - 10} more" if len(runs) > 10 else ""
        super().__init__(
            f"{len(runs)} experiment runs are named {reference!r}: {shown}{more}; "
            "pass the id of the one you mean"
        )
        self.reference = reference
        self.runs = runs
