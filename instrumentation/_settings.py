"""The SDK's settings, declared once: name, environment variable, default, meaning.

Precedence: explicit argument > environment variable > default. The SDK never refuses to
run on a bad value: it warns once, naming the variable, and uses the default (the server
and CLI, by contrast, refuse to start; see ``evalhouse.config``). The standard ``OTEL_*``
variables (endpoint, protocol, headers, service name, resource attributes) are read where
the exporter is built, in ``_tracing``.

>>> resolve("api_url", "http://evalhouse:8700/")
'http://evalhouse:8700'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.errors import ConfigError

logger = logging.getLogger("evalhouse")

_warned: set[str] = set()


def warn_once(key: str, message: str, *args: Any, level: int = logging.WARNING) -> None:
    """Log ``message`` the first time ``key`` is seen: the SDK logs instead of raising."""
    if key in _warned:
        return
    _warned.add(key)
    logger.log(level, message, *args)


def _url(value: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _seconds(value: str) -> float:
    number = float(value)
    if not number >= 0:
        raise ValueError("must be a number of seconds >= 0")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be an integer >= 1")
    return number


def _text(value: str) -> str | None:
    return value.strip() or None


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: Any
    parse: Callable[[str], Any]
    doc: str


SETTINGS = (
    Setting(
        "api_url",
        "EVALHOUSE_API_URL",
        "http://127.0.0.1:8700",
        _url,
        "The evalhouse HTTP API: server-side summaries, baselines, links to the UI.",
    ),
    Setting(
        "api_key",
        "EVALHOUSE_API_KEY",
        None,
        _text,
        "Sent as 'Authorization: Bearer KEY' with OTLP exports and API calls.",
    ),
    Setting(
        "capture_content",
        "EVALHOUSE_CAPTURE_CONTENT",
        True,
        _bool,
        "Put LLM prompts and completions on spans (GenAI instrumentations).",
    ),
    Setting(
        "summary_timeout",
        "EVALHOUSE_SUMMARY_TIMEOUT",
        10.0,
        _seconds,
        "Seconds run_experiment waits for the server's duration/token/cost summary.",
    ),
    Setting(
        "max_concurrency",
        "EVALHOUSE_MAX_CONCURRENCY",
        16,
        _positive_int,
        "Rows run_experiment runs at once when max_concurrency is not given.",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


def resolve(name: str, explicit: Any = None) -> Any:
    """The value in force for setting ``name``: ``explicit`` > environment > default."""
    setting = _BY_NAME[name]
    if explicit is not None:
        if isinstance(explicit, str) and setting.parse in (_url, _text):
            try:
                return setting.parse(explicit)
            except ValueError as exc:
                raise ConfigError(setting.name, f"{explicit!r} {exc}") from exc
        return explicit
    raw = os.environ.get(setting.env)
    if raw is None or raw == "":
        return setting.default
    try:
        return setting.parse(raw)
    except ValueError as exc:
        warn_once(
            f"setting:{setting.env}={raw}",
            "evalhouse: ignoring %s=%r (%s); using the default %r",
            setting.env,
            raw,
            exc,
            setting.default,
        )
        return setting.default


def api_client(
    api_url: str | None = None, api_key: str | None = None, *, timeout: float = 300.0
) -> ApiClient:
    """The API client (``evalhouse.api_client``, shared with the CLI) with the URL and key
    in force: argument > ``EVALHOUSE_API_URL`` / ``EVALHOUSE_API_KEY`` > default.

    >>> api_client("http://evalhouse:8700/").base_url
    'http://evalhouse:8700'
    """
    return ApiClient(
        resolve("api_url", api_url), api_key=resolve("api_key", api_key), timeout=timeout
    )
