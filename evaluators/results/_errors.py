"""The two ways a results request fails on purpose: a bad request, or no such experiment."""

from __future__ import annotations

from evalhouse.errors import EvalhouseError

__all__ = ["ExperimentNotFound", "InvalidRequest"]


class InvalidRequest(EvalhouseError):
    """A parameter the caller can fix: a filter, a key, a sort column, a format (HTTP 400)."""


class ExperimentNotFound(EvalhouseError):
    """No experiment has that id or name (HTTP 404)."""

    def __init__(self, reference: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"no experiment with id or name {reference!r}; list them with "
            "'evalhouse experiments list' (or GET /api/experiments)"
        )
        self.reference = reference
