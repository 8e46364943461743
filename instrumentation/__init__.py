"""The light SDK an app imports: OpenTelemetry set-up, tagging helpers, experiment runner.

Speaks OTLP and the HTTP API only, so an app never needs chDB or the server code.
"""

from __future__ import annotations

__all__: list[str] = []
