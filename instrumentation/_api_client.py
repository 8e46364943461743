"""A small JSON client for the evalhouse HTTP API, for the app side (standard library only).

The SDK reaches datasets and results through this client, never through the store. Base URL:
argument > ``EVALHOUSE_API_URL`` > ``http://127.0.0.1:8700``; API key: argument >
``EVALHOUSE_API_KEY`` (sent as ``Authorization: Bearer KEY``).

>>> client = ApiClient("http://127.0.0.1:8700")        # doctest: +SKIP
>>> client.get("/api/datasets")                          # doctest: +SKIP
{'datasets': [...]}
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._settings import resolve

__all__ = [
    "ApiClient",
    "ApiError",
    "ApiUnreachable",
]

# Statuses worth another try for requests that are safe to repeat.
_RETRY_STATUSES = frozenset({502, 503, 504})


class ApiError(EvalhouseError):
    """The API answered with an error; ``str(err)`` is the server's message."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ApiUnreachable(EvalhouseError):
    """No answer from the API (server not running, wrong URL, network)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach the evalhouse API at {url}: {reason}; start it with "
            "'evalhouse serve', or point EVALHOUSE_API_URL (or api_url=) at the server"
        )
        self.url = url
        self.reason = reason


class ApiClient:
    """GET and POST JSON against the evalhouse API; errors become :class:`EvalhouseError`.

    >>> ApiClient("http://localhost:8700/", api_key="k").base_url
    'http://localhost:8700'
    """

    def __init__(
        self, base_url: str | None = None, *, api_key: str | None = None, timeout: float = 300.0
    ) -> None:
        self.base_url: str = resolve("api_url", base_url)
        self.api_key: str | None = resolve("api_key", api_key)
        self.timeout = timeout

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, retries: int = 2) -> Any:
        """GET ``path`` and decode the JSON answer (``None`` params are left out)."""
        return self.request("GET", path, params=params, retries=retries)

    def post(self, path: str, payload: Any = None, *, retries: int = 0) -> Any:
        """POST ``payload`` as JSON; retried only when the caller says the call is repeatable."""
        return self.request("POST", path, json_body=payload, retries=retries)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        retries: int = 0,
    ) -> Any:
        """One API call: ``json_body`` is encoded, ``body`` is sent as is (already JSON)."""
        url = self.base_url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if json_body is not None:
            body = json.dumps(json_body).encode()
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        for attempt in range(retries + 1):
            try:
                return self._send(urllib.request.Request(url, body, headers, method=method))
            except (ApiError, ApiUnreachable) as exc:
                retryable = isinstance(exc, ApiUnreachable) or exc.status in _RETRY_STATUSES
                if not retryable or attempt == retries:
                    raise
                time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")  # the loop always returns or raises

    def _send(self, request: urllib.request.Request) -> Any:
        url = request.full_url
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _error_message(exc), url) from exc
        except urllib.error.URLError as exc:
            raise ApiUnreachable(self.base_url, str(exc.reason)) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise ApiUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ApiError(
                200,
                f"{url} answered with something that is not JSON ({data[:80]!r}); "
                "check that the API URL points at evalhouse",
                url,
            ) from exc


def _error_message(exc: urllib.error.HTTPError) -> str:
    raw = exc.read()
    try:
        message = json.loads(raw).get("error")
    except (ValueError, AttributeError):
        message = None
    if isinstance(message, str) and message:
        return message
    text = raw.decode("utf-8", "replace").strip()[:200]
    return f"HTTP {exc.code} from {exc.url}: {text or exc.reason}"
