"""evalhouse: OpenTelemetry-native trace collector and evaluator for LLM applications."""

from __future__ import annotations

from evalhouse.errors import EvalhouseError

__all__ = ["EvalhouseError", "__version__"]

__version__ = "0.1.0"
