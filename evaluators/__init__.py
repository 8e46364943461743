"""The evaluator daemon: rebuilds experiment runs from stored traces, computes metrics, scores.

Reads only the store; meets the collector through the tables, never by import.
"""

from __future__ import annotations

__all__: list[str] = []
