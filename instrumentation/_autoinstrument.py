"""Zero-code tracing: ``evalhouse-instrument python app.py`` and ``opentelemetry-instrument``.

evalhouse registers an OpenTelemetry *distro* and *configurator* (entry points
``opentelemetry_distro`` / ``opentelemetry_configurator``, both named ``evalhouse``). The
standard auto-instrumentation hook (``sitecustomize`` from ``opentelemetry-instrumentation``)
loads them in the app's process before the app runs: the distro sets the GenAI content-capture
variables, the configurator calls :func:`evalhouse.init` (without instrumenting: the hook then
loads every installed instrumentation itself).

``evalhouse-instrument`` is that hook with evalhouse selected (``OTEL_PYTHON_DISTRO`` and
``OTEL_PYTHON_CONFIGURATOR`` = ``evalhouse``) and a few flags for the usual settings; plain
``opentelemetry-instrument`` picks evalhouse up by itself when no other distro is installed,
or with those two variables set.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from evalhouse.instrumentation._instrumentors import apply_content_capture
from evalhouse.instrumentation._settings import resolve

_ENTRY_POINT_NAME = "evalhouse"
# The OTel module is marked untyped (``# type: ignore`` at its top), so it is looked up here.
_BaseDistro: Any = importlib.import_module("opentelemetry.instrumentation.distro").BaseDistro


class EvalhouseDistro(_BaseDistro):  # type: ignore[misc]
    """Loaded by the auto-instrumentation hook before any instrumentation."""

    def _configure(self, **kwargs: Any) -> None:
        apply_content_capture(bool(resolve("capture_content")))
        # If the stock OTel configurator runs instead of ours, it exports traces over OTLP and
        # nothing else (evalhouse receives traces and logs, not metrics).
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "none")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")


class EvalhouseConfigurator:
    """Sets up tracing to evalhouse from ``OTEL_*`` and ``EVALHOUSE_*`` variables."""

    def configure(self, **kwargs: Any) -> None:
        from evalhouse.instrumentation._tracing import init

        init(instrument=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalhouse-instrument",
        description="Run a Python program with its LLM calls traced to evalhouse, no code "
        "changes. Example: evalhouse-instrument python app.py",
        epilog="Also honoured: OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, "
        "OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, "
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS, EVALHOUSE_API_KEY, EVALHOUSE_CAPTURE_CONTENT.",
    )
    parser.add_argument("--endpoint", help="OTLP endpoint (default http://localhost:4317)")
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), help="default grpc")
    parser.add_argument("--service-name", help="service.name of the spans")
    parser.add_argument("--api-key", help="evalhouse API key (default EVALHOUSE_API_KEY)")
    parser.add_argument(
        "--no-capture-content",
        action="store_true",
        help="keep prompts and completions off the spans",
    )
    parser.add_argument("command", help="the program to run, e.g. python")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``evalhouse-instrument [options] COMMAND [ARGS...]``: replaces this process."""
    args = _parser().parse_args(argv)
    try:
        from opentelemetry.instrumentation import auto_instrumentation
    except ImportError:
        print(
            "evalhouse-instrument: opentelemetry-instrumentation is not installed; "
            "pip install 'evalhouse[openai]' (or the extra for your LLM client)",
            file=sys.stderr,
        )
        return 2
    env = os.environ
    env["OTEL_PYTHON_DISTRO"] = _ENTRY_POINT_NAME
    env["OTEL_PYTHON_CONFIGURATOR"] = _ENTRY_POINT_NAME
    if args.endpoint:  # a flag beats the environment, the signal-specific variable too
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = args.endpoint
        env.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
    if args.protocol:
        env["OTEL_EXPORTER_OTLP_PROTOCOL"] = args.protocol
        env.pop("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", None)
    if args.service_name:
        env["OTEL_SERVICE_NAME"] = args.service_name
    if args.api_key:
        env["EVALHOUSE_API_KEY"] = args.api_key
    if args.no_capture_content:
        env["EVALHOUSE_CAPTURE_CONTENT"] = "false"
    # The hook is the sitecustomize module beside auto_instrumentation/__init__.py; the
    # working directory follows it so the app imports its own modules as it would unwrapped.
    hook = os.path.dirname(os.path.abspath(auto_instrumentation.__file__))
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != hook]
    if os.getcwd() not in paths:
        paths.insert(0, os.getcwd())
    env["PYTHONPATH"] = os.pathsep.join([hook, *paths])
    executable = shutil.which(args.command)
    if executable is None:
        print(f"evalhouse-instrument: command not found: {args.command}", file=sys.stderr)
        return 127
    os.execv(executable, [executable, *args.args])
    return 0  # not reached: execv replaces the process
