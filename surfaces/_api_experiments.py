"""Results over the API: experiments, rows, trials, comparisons, benchmarks, exports.

Read-only ``GET`` routes (JSON unless an export; errors are ``{"error": "..."}`` with 400 for
a bad parameter or expression, 404 for an unknown experiment, 503 when ClickHouse is down:
the statuses of ``_api_common.py``):

- ``/api/experiments`` (``name``, ``dataset``, ``meta.<key>``, ``limit``, ``offset``),
  ``/api/experiments/trend`` (``name`` or ``dataset``)
- ``/api/experiments/{id}`` (summary; ``group_by``, ``where``, ``alpha``)
- ``/api/experiments/{id}/rows``, ``/trials``, ``/export``, ``/trainloop``
- ``/api/compare`` (``baseline``, ``candidate``, ``key``, ...), ``/api/benchmark``
- ``/api/openapi.json``: the OpenAPI document of these routes

``{id}`` is an experiment id, or a name meaning its latest run
(:func:`evalhouse.evaluators.resolve_experiment`). :data:`ENDPOINTS` binds each route to the
function that answers it (a method of :class:`~evalhouse.evaluators.results.Results`); the
route's parameters are read from that function's signature (:class:`Param` annotations), so
parsing, the dispatch shared with ``evalhouse experiments`` (:func:`answer`) and the OpenAPI
document all follow the one declaration.
"""

from __future__ import annotations

import inspect
import math
import typing
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import NoneType, UnionType
from typing import Annotated, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse import __version__
from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.evaluators.results import Export, Param, Results
from evalhouse.store import Store

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "Field",
    "answer",
    "endpoint_path",
    "experiment_routes",
    "fields_of",
    "openapi",
    "parse",
    "routes",
]

_KINDS: dict[Any, str] = {str: "str", int: "int", float: "float", bool: "bool"}


@dataclass(frozen=True)
class Field:
    """One parameter of a route, as its function declares it: the argument it fills
    (``argument``), its name on the wire, its kind (str, int, float, bool, list for
    ``a,b,c``, map for a ``prefix`` family), its default and its :class:`Param`."""

    argument: str
    kind: str
    default: Any
    required: bool
    param: Param

    @property
    def name(self) -> str:
        return self.param.name or self.argument

    @property
    def location(self) -> str:
        return "path" if self.param.path else "query"


def _kind(hint: Any) -> str:
    """The wire kind of a Python type: ``str | None`` is str, ``Sequence[str]`` a list."""
    if isinstance(hint, UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not NoneType]
    origin = typing.get_origin(hint) or hint
    if origin in (list, Sequence):
        return "list"
    if origin in (dict, Mapping):
        return "map"
    return _KINDS[origin]


def fields_of(function: Callable[..., Any]) -> tuple[Field, ...]:
    """The parameters of ``function`` (after its first, the results context) that carry a
    :class:`Param`; the others are for Python callers only."""
    hints = typing.get_type_hints(function, include_extras=True)
    found = []
    for argument in list(inspect.signature(function).parameters.values())[1:]:
        hint = hints[argument.name]
        if typing.get_origin(hint) is not Annotated:
            continue
        base, *extras = typing.get_args(hint)
        param = next((extra for extra in extras if isinstance(extra, Param)), None)
        if param is None:
            continue
        required = argument.default is inspect.Parameter.empty
        found.append(
            Field(
                argument.name, _kind(base), None if required else argument.default, required, param
            )
        )
    return tuple(found)


@dataclass(frozen=True)
class Endpoint:
    """A route: its path and summary, and the function that answers it."""

    name: str
    path: str
    summary: str
    function: Callable[..., Any]
    produces: str = "application/json"

    @cached_property
    def fields(self) -> tuple[Field, ...]:
        return fields_of(self.function)


ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint
    for endpoint in (
        Endpoint(
            "experiments",
            "/api/experiments",
            "Experiments, newest first; filter by name, dataset and meta.<key>=<value>.",
            Results.experiments,
        ),
        Endpoint(
            "trend",
            "/api/experiments/trend",
            "Runs of an experiment name (or dataset), oldest first, and each score's trend.",
            Results.trend,
        ),
        Endpoint(
            "rows",
            "/api/experiments/{id}/rows",
            "A page of an experiment's rows: sorted, searched, filtered.",
            Results.rows,
        ),
        Endpoint(
            "trials",
            "/api/experiments/{id}/trials",
            "Per input: each score's mean and spread across trials; flaky inputs first.",
            Results.trials,
        ),
        Endpoint(
            "export",
            "/api/experiments/{id}/export",
            "The experiment's rows as a file (Content-Disposition: attachment).",
            Results.export,
            produces="application/octet-stream",
        ),
        Endpoint(
            "trainloop",
            "/api/experiments/{id}/trainloop",
            "The experiment as a TrainLoop results file (error layout when scorers failed).",
            Results.trainloop,
        ),
        Endpoint(
            "summary",
            "/api/experiments/{id}",
            "One experiment: score statistics, metrics, cost, spans, errors; grouped.",
            Results.summary,
        ),
        Endpoint(
            "compare",
            "/api/compare",
            "Candidate vs baseline: paired statistics per score and metric, rows by regression.",
            Results.compare,
        ),
        Endpoint(
            "benchmark",
            "/api/benchmark",
            "Experiments of a dataset grouped by a field (model): score, cost, latency, tokens.",
            Results.benchmark,
        ),
    )
}


def _value(field: Field, raw: str) -> Any:
    param = field.param
    problem = None
    value: Any = raw
    if field.kind == "int":
        try:
            value = int(raw)
        except ValueError:
            problem = "an integer"
    elif field.kind == "float":
        try:
            value = float(raw)
        except ValueError:
            problem = "a number"
        if problem is None and not math.isfinite(value):
            problem = "a finite number"
    elif field.kind == "bool":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            problem = "true or false"
        value = raw.lower() in ("1", "true", "yes")
    elif field.kind == "list":
        value = [part.strip() for part in raw.split(",") if part.strip()]
    if problem is None and param.low is not None and value < param.low:
        problem = f"at least {param.low:g}"
    if problem is None and param.high is not None and value > param.high:
        problem = f"at most {param.high:g}"
    if problem is None and param.choices and value not in param.choices:
        problem = f"one of {', '.join(param.choices)}"
    if problem is not None:
        raise InvalidRequest(f"parameter {field.name}={raw!r} must be {problem}")
    return value


def parse(endpoint: Endpoint, path: Mapping[str, str], query: Mapping[str, str]) -> dict[str, Any]:
    """The function's keyword arguments from the request's text; unknown names are refused,
    a missing required one is named, an empty value means the default."""
    arguments: dict[str, Any] = {}
    known = {f.name: f for f in endpoint.fields if f.location == "query" and f.kind != "map"}
    families = [f for f in endpoint.fields if f.param.prefix]
    for name, raw in query.items():
        family = next((f for f in families if name.startswith(f.param.prefix or "")), None)
        if family is not None:
            key = name.removeprefix(family.param.prefix or "")
            arguments.setdefault(family.argument, {})[key] = raw
        elif name not in known:
            raise InvalidRequest(
                f"unknown parameter {name!r} for {endpoint.path}; known: {', '.join(known)}"
            )
        elif raw != "":
            arguments[known[name].argument] = _value(known[name], raw)
    for field in endpoint.fields:
        if field.location == "path":
            arguments[field.argument] = path.get(field.name, "")
        elif field.required and field.argument not in arguments:
            raise InvalidRequest(f"{endpoint.path} needs the parameter {field.name}")
    return arguments


def answer(results: Results, name: str, path: Mapping[str, str], query: Mapping[str, str]) -> Any:
    """The answer of endpoint ``name`` (a JSON-able dict, or an :class:`Export`).

    ``evalhouse experiments`` calls this directly when no server holds the data directory,
    so both ways parse the same parameters and give the same keys.
    """
    endpoint = ENDPOINTS[name]
    try:
        return endpoint.function(results, **parse(endpoint, path, query))
    except QueryError as exc:
        given = [p for p in ("where", "key") if query.get(p)]
        if not given:
            raise
        raise QueryError(
            f"ClickHouse refused the {' / '.join(given)} expression: {exc} (it runs over the "
            "columns of experiment_rows, e.g. scores['accuracy'] < 0.5)",
            exc.code,
        ) from exc


def endpoint_path(name: str, path: Mapping[str, str]) -> str:
    """The URL path of an endpoint call, ``{id}`` filled in (for the CLI's API mode)."""
    url = ENDPOINTS[name].path
    for key, value in path.items():
        url = url.replace(f"{{{key}}}", urllib.parse.quote(value, safe=""))
    return url


def _schema(field: Field) -> dict[str, Any]:
    types = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
    schema: dict[str, Any] = {"type": types.get(field.kind, "string")}
    param = field.param
    if field.default is not None:
        schema["default"] = list(field.default) if field.kind == "list" else field.default
    if param.choices:
        schema["enum"] = list(param.choices)
    if param.low is not None:
        schema["minimum"] = param.low
    if param.high is not None:
        schema["maximum"] = param.high
    return schema


def _parameter(field: Field) -> dict[str, Any]:
    if field.param.prefix:
        return {
            "name": f"{field.param.prefix}<key>",
            "in": "query",
            "required": False,
            "description": field.param.help,
            "schema": {"type": "string"},
        }
    return {
        "name": field.name,
        "in": field.location,
        "required": field.required or field.location == "path",
        "description": field.param.help,
        "schema": _schema(field),
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the results routes."""
    errors = {
        "400": {"description": 'Bad parameter or expression: {"error": "..."}'},
        "401": {"description": "Missing or wrong API key (when keys are configured)."},
        "404": {"description": "No such experiment."},
        "503": {"description": "ClickHouse unreachable."},
    }
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS.values():
        parameters = [_parameter(field) for field in endpoint.fields]
        paths[endpoint.path] = {
            "get": {
                "operationId": endpoint.name,
                "summary": endpoint.summary,
                "parameters": parameters,
                "responses": {
                    "200": {"description": "OK", "content": {endpoint.produces: {}}},
                    **errors,
                },
            }
        }
    paths["/api/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {"200": {"description": "OK"}},
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "evalhouse results API",
            "version": __version__,
            "description": "Read-only experiment results; keys documented in docs/results-api.md.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            }
        },
        "security": [{"bearer": []}, {"apiKey": []}, {}],
        "paths": paths,
    }


def _respond(result: Any) -> Response:
    if isinstance(result, Export):
        return Response(
            result.data,
            200,
            media_type=result.media_type,
            headers={"Content-Disposition": f'attachment; filename="{result.filename}"'},
        )
    return JSONResponse(result)


def experiment_routes(results: Results) -> list[Route]:
    """The routes over ``results`` (tests build them with their own aggregates)."""

    def handler(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            path, query = dict(request.path_params), dict(request.query_params)
            return _respond(await run_in_threadpool(answer, results, name, path, query))

        return endpoint

    async def document(request: Request) -> Response:
        return JSONResponse(openapi())

    # Suffixed routes before the bare /{id} one, so an id never swallows "rows" and the like.
    order = ("experiments", "trend", "rows", "trials", "export", "trainloop", "summary")
    routes = [
        Route(ENDPOINTS[name].path.replace("{id}", "{id:path}"), handler(name), methods=["GET"])
        for name in order
    ]
    routes.append(Route(ENDPOINTS["compare"].path, handler("compare"), methods=["GET"]))
    routes.append(Route(ENDPOINTS["benchmark"].path, handler("benchmark"), methods=["GET"]))
    routes.append(Route("/api/openapi.json", document, methods=["GET"]))
    return routes


def routes(store: Store, settings: Settings) -> list[Route]:
    """The results routes, with the aggregate scores and alpha of the settings in force."""
    return experiment_routes(Results.from_settings(store, settings))
