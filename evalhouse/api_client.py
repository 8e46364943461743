"""The one client of the evalhouse HTTP API, for the SDK and the CLI (standard library only).

The SDK reaches datasets and results through it, never through the store; ``evalhouse``
commands use it when ``evalhouse serve`` owns the data directory. It lives in the light core
because both need it and the SDK must not import the server side. Requests that are safe to
repeat are retried on 502/503/504 and on no answer; an error is one line: the server's
``{"error": ...}`` message, or what to check.

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

__all__ = ["START_ADVICE", "ApiClient", "ApiError", "ApiUnreachable"]

# Statuses worth another try for requests that are safe to repeat.
_RETRY_STATUSES = frozenset({502, 503, 504})
# Said when nothing answers: how to get a server there (the SDK's case; the CLI says its own).
START_ADVICE = (
    "start it with 'evalhouse serve', or point EVALHOUSE_API_URL (or api_url=) at the server"
)


class ApiError(EvalhouseError):
    """The API answered with an error; ``str(err)`` is the server's message."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(message)
        self.status = status
        self.url = url


class ApiUnreachable(EvalhouseError):
    """No answer from the API (server not running, wrong URL, network)."""

    def __init__(self, url: str, reason: str, advice: str = START_ADVICE) -> None:
        super().__init__(f"cannot reach the evalhouse API at {url}: {reason}; {advice}")
        self.url = url
        self.reason = reason


class ApiClient:
    """GET and POST against the evalhouse API; errors become :class:`EvalhouseError`.

    ``unreachable_advice`` ends the message when nothing answers.

    >>> ApiClient("http://localhost:8700/", api_key="k").base_url
    'http://localhost:8700'
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 300.0,
        unreachable_advice: str = START_ADVICE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.unreachable_advice = unreachable_advice

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
        """One API call, its JSON answer decoded: ``json_body`` is encoded, ``body`` is sent as
        is (already JSON)."""
        url = self._url(path, params)
        data = self.request_bytes(
            method, path, params=params, json_body=json_body, body=body, retries=retries
        )
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

    def request_bytes(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        retries: int = 0,
    ) -> bytes:
        """Like :meth:`request`, the answer's bytes as they came (a file, SQL output)."""
        url = self._url(path, params)
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

    def _url(self, path: str, params: Mapping[str, Any] | None) -> str:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def _send(self, request: urllib.request.Request) -> bytes:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _error_message(exc), request.full_url) from exc
        except urllib.error.URLError as exc:
            raise self._unreachable(str(exc.reason)) from exc
        except (TimeoutError, ConnectionError) as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from exc

    def _unreachable(self, reason: str) -> ApiUnreachable:
        return ApiUnreachable(self.base_url, reason, self.unreachable_advice)


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
