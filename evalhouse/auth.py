"""Optional API keys on every listener (OTLP and API), accepted as ``Authorization: Bearer KEY``
or ``x-api-key: KEY``. In the core: the collector and the HTTP API both check them."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

__all__ = ["UNAUTHENTICATED_MESSAGE", "ApiKeys", "carries_key"]


class ApiKeys:
    """The accepted keys; none configured means no authentication.

    >>> ApiKeys(frozenset({"k"})).allows({"authorization": "Bearer k"})
    True
    """

    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = tuple(k.encode() for k in keys)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when keys are off, or the headers carry one of them (constant-time compare)."""
        if not self._keys:
            return True
        offered = _offered(headers)
        found = False
        for candidate in offered:
            for key in self._keys:
                found |= hmac.compare_digest(candidate.encode(), key)
        return found


def _offered(headers: Mapping[str, str]) -> list[str]:
    offered = []
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        offered.append(authorization[7:].strip())
    if headers.get("x-api-key"):
        offered.append(headers["x-api-key"].strip())
    return [key for key in offered if key]


def carries_key(headers: Mapping[str, str]) -> bool:
    """Whether a request offers an API key (a program's request; feedback from it is ``api``).

    >>> carries_key({"x-api-key": "k"}), carries_key({})
    (True, False)
    """
    return bool(_offered(headers))


UNAUTHENTICATED_MESSAGE = (
    "missing or wrong API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>' "
    "(with the OTel SDK: OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<key>)"
)
