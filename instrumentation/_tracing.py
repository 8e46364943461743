"""``evalhouse.init()``: an OpenTelemetry TracerProvider exporting OTLP to evalhouse.

Decisions (documented for users in the ``init`` docstring):

- **Beside an app's own provider.** If the app already installed an SDK ``TracerProvider``,
  evalhouse adds its processor to it (the app keeps its resource, sampler and exporters, and
  its spans reach evalhouse too); otherwise evalhouse creates one and installs it globally.
  If the global provider is not an SDK one (a custom or no-op provider), evalhouse keeps its
  own provider private and uses it for experiment spans and for the LLM instrumentations.
- **Idempotent, re-pointable.** evalhouse owns one processor for the life of the process.
  Calling ``init`` again with the same settings changes nothing; with different exporter
  settings it re-points that processor at a new exporter (the old one drains in the
  background), because an OTel provider cannot drop a processor.
- **Never raises.** A failure is logged once and tracing stays off; the app keeps running.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from evalhouse import __version__
from evalhouse.instrumentation._instrumentors import apply_content_capture, instrument_installed
from evalhouse.instrumentation._settings import logger, resolve, warn_once

_PROTOCOLS = {"grpc": "grpc", "http/protobuf": "http/protobuf", "http": "http/protobuf"}
_DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}
_FLUSH_MILLIS = 30_000


@dataclass(frozen=True)
class Tracing:
    """What :func:`init` set up. ``error`` is set (and tracing off) when set-up failed."""

    endpoint: str | None
    protocol: str | None
    instrumented: tuple[str, ...] = ()
    shares_app_provider: bool = False
    error: str | None = None
    provider: TracerProvider | None = field(default=None, repr=False, compare=False)

    def force_flush(self, timeout_seconds: float = _FLUSH_MILLIS / 1000) -> bool:
        """Export every span ended so far; False if that did not finish in time."""
        return force_flush(timeout_seconds)


class _Switch(SpanProcessor):
    """The one processor evalhouse adds to a provider; its exporter can be re-pointed."""

    def __init__(self, delegate: SpanProcessor) -> None:
        self.delegate = delegate

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.delegate.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self.delegate.on_end(span)

    def shutdown(self) -> None:
        self.delegate.shutdown()

    def force_flush(self, timeout_millis: int = _FLUSH_MILLIS) -> bool:
        return self.delegate.force_flush(timeout_millis)


@dataclass
class _State:
    provider: TracerProvider
    switch: _Switch
    key: tuple[Any, ...]
    service_name: str | None
    tracing: Tracing


_lock = threading.Lock()
_state: _State | None = None


def init(
    endpoint: str | None = None,
    service_name: str | None = None,
    api_key: str | None = None,
    capture_content: bool | None = None,
    protocol: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    exporter: SpanExporter | None = None,
    instrument: bool = True,
) -> Tracing:
    """Trace this process to evalhouse over OTLP and instrument the installed LLM clients.

    - ``endpoint``: OTLP endpoint; default ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, then
      ``OTEL_EXPORTER_OTLP_ENDPOINT``, then ``http://localhost:4317`` (gRPC) or
      ``http://localhost:4318`` (HTTP; ``/v1/traces`` is appended to a bare base URL).
    - ``protocol``: ``"grpc"`` (default) or ``"http/protobuf"``; default
      ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``.
    - ``service_name``: default ``OTEL_SERVICE_NAME`` (or ``service.name`` in
      ``OTEL_RESOURCE_ATTRIBUTES``, which is merged), else the program's name as OTel
      distributions derive it: the package of ``python -m pkg``, else the script's file name
      (``python support_bot.py`` -> ``support_bot``); ``unknown_service:python`` only when
      there is none (an interactive interpreter).
    - ``api_key`` (default ``EVALHOUSE_API_KEY``) is sent as ``authorization: Bearer``, on top
      of ``headers`` and ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS``.
    - ``capture_content`` (default ``EVALHOUSE_CAPTURE_CONTENT``, else True): LLM messages on
      spans. The instrumentations read it once, when they are first instrumented.
    - ``exporter``: send spans to this exporter instead of OTLP (tests, other backends).
    - ``instrument``: instrument the installed LLM clients (default True).

    Calling it again with the same settings changes nothing; with other exporter settings it
    re-points evalhouse's exporter. It never raises: a failure is logged once and returned in
    ``Tracing.error``. If the app already has an SDK TracerProvider, evalhouse adds its
    processor to it instead of replacing it (call ``init`` after your own OTel set-up).

    >>> import evalhouse
    >>> tracing = evalhouse.init(service_name="support-bot")  # doctest: +SKIP
    >>> tracing.endpoint  # doctest: +SKIP
    'http://localhost:4317'
    """
    global _state
    try:
        with _lock:
            capture = resolve("capture_content", capture_content)
            apply_content_capture(bool(capture))
            chosen = _protocol(protocol) if exporter is None else None
            target = _endpoint(endpoint, chosen) if chosen is not None else None
            sent_headers = _headers(headers, resolve("api_key", api_key))
            key = (target, chosen, tuple(sorted(sent_headers.items())), id(exporter))
            if _state is None:
                processor = _processor(exporter, target, chosen, sent_headers)
                _state = _start(service_name, key, processor)
            elif key != _state.key:
                _repoint(_state, key, _processor(exporter, target, chosen, sent_headers))
            if service_name is not None and service_name != _state.service_name:
                warn_once(
                    f"service:{service_name}",
                    "evalhouse: the service name is fixed when tracing starts (%r); restart "
                    "the process to use %r",
                    _state.service_name,
                    service_name,
                )
            instrumented = instrument_installed(_state.provider) if instrument else ()
            _state.tracing = Tracing(
                endpoint=target,
                protocol=chosen,
                instrumented=tuple(sorted({*_state.tracing.instrumented, *instrumented})),
                shares_app_provider=_state.tracing.shares_app_provider,
                provider=_state.provider,
            )
            return _state.tracing
    except Exception as exc:  # never break the app over tracing
        warn_once(
            f"init:{type(exc).__name__}:{exc}",
            "evalhouse: tracing is off: %s. Check the endpoint and OTEL_* settings",
            exc,
        )
        return Tracing(endpoint=None, protocol=None, error=str(exc))


def ensure() -> Tracing:
    """The current set-up, calling :func:`init` with defaults if nobody has."""
    state = _state
    return state.tracing if state is not None else init()


def tracer() -> trace.Tracer:
    """The tracer evalhouse's own spans (tagging helpers, runner) come from."""
    provider = ensure().provider
    source: Any = provider if provider is not None else trace.get_tracer_provider()
    result: trace.Tracer = source.get_tracer("evalhouse", __version__)
    return result


def force_flush(timeout_seconds: float = _FLUSH_MILLIS / 1000) -> bool:
    """Export every span ended so far through evalhouse's exporter."""
    state = _state
    if state is None:
        return True
    try:
        return bool(state.switch.force_flush(int(timeout_seconds * 1000)))
    except Exception as exc:
        warn_once(f"flush:{exc}", "evalhouse: could not flush spans: %s", exc)
        return False


def _start(service_name: str | None, key: tuple[Any, ...], processor: SpanProcessor) -> _State:
    switch = _Switch(processor)
    current = trace.get_tracer_provider()
    shares = isinstance(current, TracerProvider)
    if isinstance(current, TracerProvider):
        provider = current
        if service_name is not None:
            logger.info("evalhouse: using the app's TracerProvider and its service name")
    else:
        attributes = {"service.name": service_name} if service_name else {}
        resource = Resource.create(attributes)
        named = str(resource.attributes.get("service.name", ""))
        program = program_name()
        if named.startswith("unknown_service") and program:
            resource = Resource.create({"service.name": program})
        provider = TracerProvider(resource=resource)
        if isinstance(current, trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
            if trace.get_tracer_provider() is not provider:  # lost a race with the app
                raced = trace.get_tracer_provider()
                if isinstance(raced, TracerProvider):
                    provider, shares = raced, True
    provider.add_span_processor(switch)
    tracing = Tracing(endpoint=None, protocol=None, shares_app_provider=shares, provider=provider)
    return _State(provider, switch, key, service_name, tracing)


def program_name() -> str | None:
    """The name of the running program: the module of ``python -m pkg`` (``pkg``), else the
    script's file name without ``.py``; None in an interactive interpreter.

    Used as the default ``service.name`` instead of the SDK's ``unknown_service:python``.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = getattr(spec, "name", "") or ""
    if module:
        return module.removesuffix(".__main__") or None
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv else "")
    if not path or path in ("-c", "-"):
        return None
    return Path(path).stem or None


def _repoint(state: _State, key: tuple[Any, ...], processor: SpanProcessor) -> None:
    old = state.switch.delegate
    state.switch.delegate = processor
    state.key = key
    # Draining the old exporter may wait on an unreachable endpoint: not on the app's time.
    threading.Thread(target=old.shutdown, name="evalhouse-old-exporter", daemon=True).start()


def _processor(
    exporter: SpanExporter | None,
    endpoint: str | None,
    protocol: str | None,
    headers: Mapping[str, str],
) -> SpanProcessor:
    if exporter is None:
        assert endpoint is not None and protocol is not None
        exporter = _otlp_exporter(endpoint, protocol, headers)
    # The SDK's default queue (2,048 spans) drops spans when an experiment runs hundreds of
    # rows per second; a deeper queue rides out bursts. OTEL_BSP_* variables still win.
    queue = None if os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") else _QUEUE_SPANS
    batch = None if os.environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") else _BATCH_SPANS
    return BatchSpanProcessor(exporter, max_queue_size=queue, max_export_batch_size=batch)


_QUEUE_SPANS = 32_768
_BATCH_SPANS = 1_024


def _otlp_exporter(endpoint: str, protocol: str, headers: Mapping[str, str]) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(endpoint=endpoint, headers=dict(headers))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(endpoint=endpoint, headers=dict(headers))


def _protocol(explicit: str | None) -> str:
    raw = (
        explicit
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    chosen = _PROTOCOLS.get(raw.strip().lower())
    if chosen is None:
        warn_once(
            f"protocol:{raw}",
            "evalhouse: OTLP protocol %r is not supported here; using grpc "
            "(choose grpc or http/protobuf)",
            raw,
        )
        return "grpc"
    return chosen


def _endpoint(explicit: str | None, protocol: str) -> str:
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if protocol == "grpc":
        url = explicit or traces or base or _DEFAULT_ENDPOINTS["grpc"]
        # "host:4317" means plain-text gRPC, as the OTel spec's examples do.
        return url if "://" in url else f"http://{url}"
    if explicit is None and traces:
        return traces  # a signal-specific URL is used as is (OTel spec)
    url = explicit or base or _DEFAULT_ENDPOINTS["http/protobuf"]
    if "://" not in url:
        url = f"http://{url}"
    if urlparse(url).path in ("", "/"):
        url = url.rstrip("/") + "/v1/traces"
    return url


def _headers(explicit: Mapping[str, str] | None, api_key: str | None) -> dict[str, str]:
    from opentelemetry.util.re import parse_env_headers

    raw = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    headers = {key.lower(): value for key, value in parse_env_headers(raw, liberal=True).items()}
    headers.update({key.lower(): value for key, value in (explicit or {}).items()})
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers
