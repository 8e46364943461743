"""The web UI: one HTML shell for every page, and the static styles and scripts it loads.

Pages: ``/`` (the production traces when there are some, else the experiments),
``/traces``, ``/traces/{trace_id}``, ``/sessions``, ``/sessions/{id}``, ``/usage``,
``/experiments``, ``/experiments/{id}``, ``/compare?baseline=&candidate=``,
``/benchmark?dataset=&by=``, ``/review`` and ``/review/{queue}``. They hold no data: the
scripts fetch it from the HTTP API with the browser's API key, so pages and assets load without one
(``_api_common.RequireApiKey`` guards ``/api/`` only). Every asset ships in the package and
is served from memory; nothing comes from a CDN.

>>> sorted(_assets())[:2]   # doctest: +SKIP
['api.js', 'app.css']
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from evalhouse import __version__
from evalhouse.config import Settings
from evalhouse.store import Store

__all__ = ["ASSET_PREFIX", "PAGES", "routes"]

ASSET_PREFIX = "/ui/"
# Page paths, each answered with the shell; the script picks the page from the path.
PAGES = (
    "/",
    "/experiments",
    "/experiments/{experiment_id}",
    "/compare",
    "/traces",
    "/traces/{trace_id}",
    "/sessions",
    "/sessions/{session_id:path}",
    "/usage",
    "/benchmark",
    "/review",
    "/review/{queue}",
    "/replays/{replay_id}",
)
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


@cache
def _assets() -> dict[str, tuple[bytes, str, str]]:
    """name -> (content, media type, etag), read once from the package."""
    folder = files("evalhouse.surfaces").joinpath("ui")
    found: dict[str, tuple[bytes, str, str]] = {}
    for entry in folder.iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        media = _TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
        if media is None:
            continue
        content = entry.read_bytes()
        found[entry.name] = (content, media, hashlib.sha256(content).hexdigest()[:16])
    return found


@cache
def _shell() -> str:
    # Asset URLs carry a digest of every asset (/ui/<digest>/app.js), so an upgrade is never
    # served from a stale browser cache, and the scripts' relative imports carry it too.
    html = _assets()["index.html"][0].decode()
    return html.replace("{{version}}", __version__).replace("{{assets}}", _asset_version())


@cache
def _asset_version() -> str:
    digest = hashlib.sha256()
    for name, (_, _, etag) in sorted(_assets().items()):
        digest.update(f"{name}:{etag}".encode())
    return digest.hexdigest()[:12]


async def _page(request: Request) -> Response:
    return HTMLResponse(_shell(), headers={"Cache-Control": "no-cache"})


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    found = _assets().get(name)
    if found is None or name == "index.html":
        return Response(
            f"no UI asset {name!r}: reload the page (the server may have been upgraded)",
            404,
            media_type="text/plain",
        )
    content, media, etag = found
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media, headers=headers)


async def _not_found(request: Request) -> Response:
    path = request.url.path
    if path.startswith("/api/"):
        return JSONResponse(
            {"error": f"no API endpoint answers GET {path}: check the path and the method"}, 404
        )
    # Unknown pages get the shell too: it shows "page not found" with links to real pages.
    return HTMLResponse(_shell(), 404, headers={"Cache-Control": "no-cache"})


def routes(store: Store, settings: Settings) -> list[Route]:
    """The UI's routes; registered last, as the last one catches every other GET."""
    return [
        *(Route(path, _page, methods=["GET"]) for path in PAGES),
        # Any digest is answered with the current asset: a page loaded before an upgrade
        # still gets working (new) scripts.
        Route(ASSET_PREFIX + "{digest}/{name}", _asset, methods=["GET"]),
        Route("/{path:path}", _not_found, methods=["GET"]),
    ]
