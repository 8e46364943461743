"""Results over the API: experiments, rows, trials, comparisons, benchmarks, exports.

Read-only ``GET`` routes (JSON unless an export; errors are ``{"error": "..."}`` with 400 for
a bad parameter or expression, 404 for an unknown experiment, 503 when ClickHouse is down):

- ``/api/experiments`` (``name``, ``dataset``, ``meta.<key>``, ``limit``, ``offset``),
  ``/api/experiments/trend`` (``name`` or ``dataset``)
- ``/api/experiments/{id}`` (summary; ``group_by``, ``where``, ``alpha``)
- ``/api/experiments/{id}/rows``, ``/trials``, ``/export``, ``/trainloop``
- ``/api/compare`` (``baseline``, ``candidate``, ``key``, ...), ``/api/benchmark``
- ``/api/openapi.json``: the OpenAPI document of these routes

``{id}`` is an experiment id or name (a name means its latest run). The table
:data:`ENDPOINTS` declares every route once: it drives parameter parsing, the dispatch shared
with ``evalhouse experiments`` (:func:`answer`) and the OpenAPI document.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse import __version__
from evalhouse.config import Settings
from evalhouse.errors import EvalhouseError, QueryError, StoreUnavailable
from evalhouse.evaluators.results import (
    FORMATS,
    ExperimentNotFound,
    Export,
    InvalidRequest,
    Results,
)
from evalhouse.store import Store
from evalhouse.surfaces._api_common import error

__all__ = ["ENDPOINTS", "Endpoint", "Param", "answer", "openapi", "routes"]


@dataclass(frozen=True)
class Param:
    """A query (or path) parameter: ``kind`` is str, int, float, bool or list (a,b,c)."""

    name: str
    kind: str
    help: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    location: str = "query"


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    summary: str
    params: tuple[Param, ...]
    produces: str = "application/json"


_ID = Param("id", "str", "Experiment id, or name (its latest run).", location="path")
_WHERE = Param(
    "where",
    "str",
    "SQL boolean over experiment_rows columns, run read-only, e.g. scores['accuracy'] < 0.5.",
)
_ALPHA = Param("alpha", "float", "Significance level (default from settings, 0.05).", None, 0, 1)
_LIMIT_OFFSET = (
    Param("limit", "int", "Page size.", 100, 1, 10_000),
    Param("offset", "int", "Rows to skip.", 0, 0, 2**62),
)

ENDPOINTS: dict[str, Endpoint] = {
    endpoint.name: endpoint
    for endpoint in (
        Endpoint(
            "experiments",
            "/api/experiments",
            "Experiments, newest first; filter by name, dataset and meta.<key>=<value>.",
            (
                Param("name", "str", "Experiment name."),
                Param("dataset", "str", "Dataset name."),
                Param(
                    "usable",
                    "bool",
                    "Only runs that can be a baseline: at least one row whose task did not error.",
                    False,
                ),
                Param("limit", "int", "Page size.", 50, 1, 1000),
                Param("offset", "int", "Experiments to skip.", 0, 0, 2**62),
            ),
        ),
        Endpoint(
            "trend",
            "/api/experiments/trend",
            "Runs of an experiment name (or dataset), oldest first, and each score's trend.",
            (
                Param("name", "str", "Experiment name."),
                Param("dataset", "str", "Dataset name (instead of name)."),
                Param("limit", "int", "Latest runs to include.", 100, 2, 1000),
            ),
        ),
        Endpoint(
            "rows",
            "/api/experiments/{id}/rows",
            "A page of an experiment's rows: sorted, searched, filtered.",
            (
                _ID,
                *_LIMIT_OFFSET,
                Param("sort", "str", "A column (task_duration_ms, ...) or score:<name>."),
                Param("order", "str", "asc or desc.", "asc", choices=("asc", "desc")),
                Param("q", "str", "Text searched in input, expected, output and error."),
                _WHERE,
                Param(
                    "errors",
                    "str",
                    "only: rows with a task error; scorer_errors: rows with a scorer error.",
                    choices=("only", "scorer_errors"),
                ),
            ),
        ),
        Endpoint(
            "trials",
            "/api/experiments/{id}/trials",
            "Per input: each score's mean and spread across trials; flaky inputs first.",
            (
                _ID,
                _WHERE,
                Param("flaky", "bool", "Only flaky inputs.", False),
                Param("limit", "int", "Page size.", 1000, 1, 10_000),
                Param("offset", "int", "Inputs to skip.", 0, 0, 2**62),
            ),
        ),
        Endpoint(
            "export",
            "/api/experiments/{id}/export",
            "The experiment's rows as a file (Content-Disposition: attachment).",
            (
                _ID,
                Param("format", "str", "File format.", "jsonl", choices=FORMATS),
                Param("fields", "list", "Columns to include (default: the useful ones)."),
                _WHERE,
            ),
            produces="application/octet-stream",
        ),
        Endpoint(
            "trainloop",
            "/api/experiments/{id}/trainloop",
            "The experiment as a TrainLoop results file (error layout when scorers failed).",
            (
                _ID,
                Param("pass_threshold", "float", "A score at least this passes.", 0.5, 0, 1),
                Param("details", "bool", "Include per-row details.", True),
            ),
        ),
        Endpoint(
            "summary",
            "/api/experiments/{id}",
            "One experiment: score statistics, metrics, cost, spans, errors; grouped.",
            (
                _ID,
                Param("group_by", "str", "dataset, experiment, trial or metadata.<key>."),
                _WHERE,
                _ALPHA,
            ),
        ),
        Endpoint(
            "compare",
            "/api/compare",
            "Candidate vs baseline: paired statistics per score and metric, rows by regression.",
            (
                Param("candidate", "str", "Candidate experiment id or name."),
                Param(
                    "baseline",
                    "str",
                    "Baseline id or name (default: the previous run of the same name, "
                    "else of the same dataset).",
                ),
                Param("key", "str", "SQL expression matching rows (default: the input's hash)."),
                _WHERE,
                _ALPHA,
                Param("tolerance", "float", "Per-row score change counted as unchanged.", 1e-9, 0),
                Param(
                    "metric_tolerance",
                    "float",
                    "Per-row metric change (fraction) counted as unchanged.",
                    0.05,
                    0,
                ),
                Param("score", "str", "Order rows by this score's difference."),
                *_LIMIT_OFFSET,
            ),
        ),
        Endpoint(
            "benchmark",
            "/api/benchmark",
            "Experiments of a dataset grouped by a field (model): score, cost, latency, tokens.",
            (
                Param("dataset", "str", "Dataset name."),
                Param("by", "str", "metadata.<key>, experiment or trial.", "metadata.model"),
                Param("score", "str", "Score to rank by (default: mean of all scores)."),
                Param("pass_threshold", "float", "A score at least this passes.", 0.5, 0, 1),
                Param(
                    "layout",
                    "str",
                    "evalhouse or trainloop.",
                    "evalhouse",
                    choices=("evalhouse", "trainloop"),
                ),
            ),
        ),
    )
}

_ANY_META = "meta."


def _value(param: Param, raw: str) -> Any:
    problem = None
    value: Any = raw
    if param.kind == "int":
        try:
            value = int(raw)
        except ValueError:
            problem = "an integer"
    elif param.kind == "float":
        try:
            value = float(raw)
        except ValueError:
            problem = "a number"
        if problem is None and not math.isfinite(value):
            problem = "a finite number"
    elif param.kind == "bool":
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            problem = "true or false"
        value = raw.lower() in ("1", "true", "yes")
    elif param.kind == "list":
        value = [part.strip() for part in raw.split(",") if part.strip()]
    if problem is None and param.low is not None and value < param.low:
        problem = f"at least {param.low:g}"
    if problem is None and param.high is not None and value > param.high:
        problem = f"at most {param.high:g}"
    if problem is None and param.choices and value not in param.choices:
        problem = f"one of {', '.join(param.choices)}"
    if problem is not None:
        raise InvalidRequest(f"parameter {param.name}={raw!r} must be {problem}")
    return value


def parse(endpoint: Endpoint, query: Mapping[str, str]) -> dict[str, Any]:
    """Query parameters as Python values (defaults filled in); unknown names are refused."""
    known = {param.name: param for param in endpoint.params if param.location == "query"}
    values = {name: param.default for name, param in known.items()}
    for name, raw in query.items():
        if endpoint.name == "experiments" and name.startswith(_ANY_META):
            continue
        if name not in known:
            raise InvalidRequest(
                f"unknown parameter {name!r} for {endpoint.path}; known: {', '.join(known)}"
            )
        if raw != "":
            values[name] = _value(known[name], raw)
    return values


def _required(values: Mapping[str, Any], name: str, endpoint: Endpoint) -> str:
    value = values.get(name)
    if not value:
        raise InvalidRequest(f"{endpoint.path} needs the parameter {name}")
    return str(value)


def answer(results: Results, name: str, path: Mapping[str, str], query: Mapping[str, str]) -> Any:
    """The answer of endpoint ``name`` (a JSON-able dict, or an :class:`Export`).

    ``evalhouse experiments`` calls this directly when no server holds the data directory,
    so both ways parse the same parameters and give the same keys.
    """
    try:
        return _dispatch(results, name, path, query)
    except QueryError as exc:
        given = [p for p in ("where", "key") if query.get(p)]
        if not given:
            raise
        raise QueryError(
            f"ClickHouse refused the {' / '.join(given)} expression: {exc} (it runs over the "
            "columns of experiment_rows, e.g. scores['accuracy'] < 0.5)",
            exc.code,
        ) from exc


def _dispatch(
    results: Results, name: str, path: Mapping[str, str], query: Mapping[str, str]
) -> Any:
    endpoint = ENDPOINTS[name]
    v = parse(endpoint, query)
    experiment = path.get("id", "")
    if name == "experiments":
        meta = {k.removeprefix(_ANY_META): val for k, val in query.items() if k.startswith("meta.")}
        return results.experiments(
            name=v["name"],
            dataset=v["dataset"],
            metadata=meta,
            usable=v["usable"],
            limit=v["limit"],
            offset=v["offset"],
        )
    if name == "trend":
        return results.trend(name=v["name"], dataset=v["dataset"], limit=v["limit"])
    if name == "summary":
        return results.summary(
            experiment, group_by=v["group_by"], where=v["where"], alpha=v["alpha"]
        )
    if name == "rows":
        return results.rows(experiment, **v)
    if name == "trials":
        return results.trials(
            experiment,
            where=v["where"],
            flaky_only=v["flaky"],
            limit=v["limit"],
            offset=v["offset"],
        )
    if name == "export":
        return results.export(experiment, fmt=v["format"], fields=v["fields"], where=v["where"])
    if name == "trainloop":
        return results.trainloop(
            experiment, pass_threshold=v["pass_threshold"], details=v["details"]
        )
    if name == "compare":
        return results.compare(
            _required(v, "candidate", endpoint),
            v["baseline"],
            key=v["key"],
            where=v["where"],
            alpha=v["alpha"],
            tolerance=v["tolerance"],
            metric_tolerance=v["metric_tolerance"],
            score=v["score"],
            limit=v["limit"],
            offset=v["offset"],
        )
    if name == "benchmark":
        return results.benchmark(
            dataset=_required(v, "dataset", endpoint),
            by=v["by"],
            score=v["score"],
            pass_threshold=v["pass_threshold"],
            layout=v["layout"],
        )
    raise AssertionError(f"no handler for endpoint {name}")


def request_path(name: str, path: Mapping[str, str], query: Mapping[str, Any]) -> str:
    """The URL path and query string of an endpoint call (for the CLI's API mode)."""
    url = ENDPOINTS[name].path
    for key, value in path.items():
        url = url.replace(f"{{{key}}}", urllib.parse.quote(value, safe=""))
    present = {k: v for k, v in query.items() if v is not None}
    return url + ("?" + urllib.parse.urlencode(present) if present else "")


def _schema(param: Param) -> dict[str, Any]:
    types = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}
    schema: dict[str, Any] = {"type": types.get(param.kind, "string")}
    if param.default is not None:
        schema["default"] = param.default
    if param.choices:
        schema["enum"] = list(param.choices)
    if param.low is not None:
        schema["minimum"] = param.low
    if param.high is not None:
        schema["maximum"] = param.high
    return schema


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
        parameters = [
            {
                "name": param.name,
                "in": param.location,
                "required": param.location == "path",
                "description": param.help,
                "schema": _schema(param),
            }
            for param in endpoint.params
        ]
        if endpoint.name == "experiments":
            parameters.append(
                {
                    "name": "meta.<key>",
                    "in": "query",
                    "required": False,
                    "description": "Experiment metadata value to match, e.g. meta.model=gpt-4o.",
                    "schema": {"type": "string"},
                }
            )
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
            query = dict(request.query_params)
            try:
                result = await run_in_threadpool(
                    answer, results, name, dict(request.path_params), query
                )
            except (InvalidRequest, QueryError) as exc:
                return error(400, str(exc))
            except ExperimentNotFound as exc:
                return error(404, str(exc))
            except StoreUnavailable as exc:
                return error(503, str(exc))
            except EvalhouseError as exc:
                return error(500, str(exc))
            return _respond(result)

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
