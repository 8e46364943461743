"""What people touch: the CLI, the HTTP API and (later) the web UI. Uses the layers below."""

from __future__ import annotations

__all__: list[str] = []
