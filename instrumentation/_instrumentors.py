"""Instrument every installed LLM client with the official OpenTelemetry GenAI packages.

The official instrumentations (``opentelemetry-instrumentation-genai-openai``,
``-genai-anthropic``, ``-genai-langchain``, ...) register under the ``opentelemetry_instrumentor``
entry-point group with modules under ``opentelemetry.instrumentation.genai``; we load exactly
those whose client library is installed. Content capture is switched by environment
variables that the instrumentations read when they are instrumented, so it is set first
(see docs/sql.md, "Normalised LLM columns").
"""

from __future__ import annotations

import importlib.util
import logging
import os
from importlib.metadata import entry_points
from typing import Any

from evalhouse.instrumentation._settings import logger, warn_once

_GENAI_MODULES = "opentelemetry.instrumentation.genai."
_CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_STABILITY = "OTEL_SEMCONV_STABILITY_OPT_IN"
_LATEST = "gen_ai_latest_experimental"
_CAPTURING = ("SPAN_ONLY", "SPAN_AND_EVENT")

# Client library (import name) -> the evalhouse extra that instruments it.
KNOWN_CLIENTS = {"openai": "openai", "anthropic": "anthropic", "langchain": "langchain"}


def apply_content_capture(capture: bool) -> None:
    """Set the GenAI content-capture variables. Content goes on spans (``span_only``) so it
    arrives with the span rather than as separate OTLP log events; an app that asked for
    ``span_and_event`` keeps it."""
    opted_in = [part.strip() for part in os.environ.get(_STABILITY, "").split(",") if part]
    if _LATEST not in opted_in:
        os.environ[_STABILITY] = ",".join([*opted_in, _LATEST])
    if capture:
        if os.environ.get(_CAPTURE, "").strip().upper() not in _CAPTURING:
            os.environ[_CAPTURE] = "span_only"
    else:
        os.environ[_CAPTURE] = "no_content"


def instrument_installed(tracer_provider: Any) -> tuple[str, ...]:
    """Instrument each installed client once; return the names instrumented (idempotent)."""
    done: list[str] = []
    for entry_point in entry_points(group="opentelemetry_instrumentor"):
        if not entry_point.value.startswith(_GENAI_MODULES):
            continue
        try:
            if _missing_library(entry_point):
                continue
            instrumentor = entry_point.load()()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument(tracer_provider=tracer_provider, skip_dep_check=True)
                logger.debug("evalhouse: instrumented %s", entry_point.name)
            done.append(entry_point.name)
        except Exception as exc:  # one broken instrumentation must not stop the others
            warn_once(
                f"instrument:{entry_point.name}",
                "evalhouse: could not instrument %s (%s); its calls will not be traced. "
                "Reinstall it with pip install -U 'evalhouse[%s]'",
                entry_point.name,
                exc,
                entry_point.name,
            )
    for library, extra in KNOWN_CLIENTS.items():
        if library not in done and importlib.util.find_spec(library) is not None:
            warn_once(
                f"uninstrumented:{library}",
                "evalhouse: %s is installed but not traced; pip install 'evalhouse[%s]' "
                "adds its OpenTelemetry instrumentation",
                library,
                extra,
                level=logging.INFO,
            )
    return tuple(done)


def _missing_library(entry_point: Any) -> bool:
    """True when the client library the instrumentation wraps is not installed."""
    from opentelemetry.instrumentation.dependencies import get_dist_dependency_conflicts

    dist = getattr(entry_point, "dist", None)
    return dist is not None and get_dist_dependency_conflicts(dist) is not None
