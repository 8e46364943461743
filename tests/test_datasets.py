"""Datasets end to end: the SDK talks HTTP to a real API listener over a real chDB store."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, free_port
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_builders import span, trace_request
from test_docs_sql import sql_examples
from test_sdk_support import attr, by_purpose, finished, memory_spans

from evalhouse import contract
from evalhouse.api_client import ApiClient, ApiError, ApiUnreachable
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector._writer import _length_delimited
from evalhouse.encoding import row_id
from evalhouse.instrumentation._datasets import (
    DatasetError,
    DatasetRow,
    dataset,
    list_datasets,
)
from evalhouse.store import OtlpSink, Store, migrate
from evalhouse.surfaces.api import api_app

MS = 1_000_000


@pytest.fixture(scope="module")
def shared_store(chdb_dsn: str) -> Iterator[Store]:
    """One migrated database for the module (migrating takes ~1 s); tests use own names."""
    store = Store(chdb_dsn, database=f"test_datasets_{uuid.uuid4().hex[:8]}")
    migrate(store)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


@pytest.fixture(scope="module")
def start_api(shared_store: Store) -> Iterator[Callable[..., str]]:
    """Start the HTTP API in-process on a free port; returns its base URL."""
    servers: list[AsgiServer] = []

    def start(keys: frozenset[str] = frozenset()) -> str:
        server = AsgiServer.start(api_app(shared_store, ApiKeys(keys)), "127.0.0.1", 0, "API")
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def api(start_api: Callable[..., str]) -> str:
    return start_api()


@pytest.fixture
def name() -> str:
    """A dataset name of the test's own."""
    return f"ds-{uuid.uuid4().hex[:10]}"


def _names(api: str) -> set[str]:
    return {info.name for info in list_datasets(api_url=api)}


def _rows(name: str, api_url: str, version: int | None = None) -> list[dict[str, Any]]:
    return [dict(row) for row in dataset(name, version=version, api_url=api_url).rows()]


def test_rows_from_a_list_load_back_as_version_1(api: str, name: str) -> None:
    qa = dataset(name, api_url=api)
    data = [
        {"id": "refund", "input": {"question": "refund window?"}, "expected": "30 days"},
        {"input": "Grüße, 世界", "expected_output": 42, "metadata": {"tags": ["i18n"]}},
        {"id": 7, "input": [1, 2.5, None, True], "metadata": {"nested": {"k": [{}]}}},
    ]
    pushed = qa.append(data, description="first cut")
    assert (pushed.name, pushed.version, pushed.rows, pushed.changed) == (name, 1, 3, 3)
    assert pushed.source == "list" and pushed.description == "first cut"
    assert pushed.created_at is not None

    rows = qa.rows()
    assert rows == [
        DatasetRow("refund", {"question": "refund window?"}, "30 days", None),
        DatasetRow(row_id("Grüße, 世界"), "Grüße, 世界", 42, {"tags": ["i18n"]}),
        DatasetRow("7", [1, 2.5, None, True], None, {"nested": {"k": [{}]}}),
    ]
    assert rows[1]["expected"] == rows[1].expected_output == 42
    assert dict(rows[0]) == {
        "id": "refund",
        "input": {"question": "refund window?"},
        "expected": "30 days",
        "metadata": None,
    }

    [info] = [i for i in list_datasets(api_url=api) if i.name == name]
    assert (info.name, info.version, info.rows, info.versions) == (name, 1, 3, 1)
    assert info.description == "first cut"
    assert info.created_at is not None and info.created_at == info.updated_at


def test_append_makes_new_versions_and_older_versions_stay_readable(api: str, name: str) -> None:
    qa = dataset(name, api_url=api)
    qa.append([{"id": f"r{i}", "input": f"q{i}", "expected": f"a{i}"} for i in range(3)])
    second = qa.append(
        [
            {"id": "r1", "input": "q1", "expected": "a1 (fixed)"},
            {"id": "r3", "input": "q3", "expected": "a3"},
        ],
        description="fix r1, add r3",
    )
    assert (second.version, second.rows, second.changed) == (2, 4, 2)

    latest = _rows(name, api)
    assert [(r["id"], r["expected"]) for r in latest] == [
        ("r0", "a0"),
        ("r1", "a1 (fixed)"),
        ("r2", "a2"),
        ("r3", "a3"),
    ]
    assert [(r["id"], r["expected"]) for r in _rows(name, api, version=1)] == [
        ("r0", "a0"),
        ("r1", "a1"),
        ("r2", "a2"),
    ]

    third = qa.delete(["r0", "r2"], description="drop stale rows")
    assert (third.version, third.rows, third.changed, third.source) == (3, 2, 2, "delete")
    assert [r["id"] for r in _rows(name, api)] == ["r1", "r3"]
    assert [r["id"] for r in qa.at(2).rows()] == ["r0", "r1", "r2", "r3"]

    history = qa.versions()
    assert [(v.version, v.rows, v.changed) for v in history] == [(1, 3, 3), (2, 4, 2), (3, 2, 2)]
    assert [v.description for v in history] == ["", "fix r1, add r3", "drop stale rows"]
    [info] = [i for i in list_datasets(api_url=api) if i.name == name]
    assert (info.version, info.rows, info.versions, info.description) == (
        3,
        2,
        3,
        "drop stale rows",
    )


def test_reappending_the_same_inputs_replaces_rows_instead_of_duplicating(
    api: str, name: str
) -> None:
    qa = dataset(name, api_url=api)
    qa.append([{"input": {"q": 1}, "expected": "old"}, {"input": {"q": 2}}])
    qa.append([{"input": {"q": 1}, "expected": "new"}])
    assert [(r.input, r.expected) for r in qa.rows()] == [({"q": 1}, "new"), ({"q": 2}, None)]


def test_csv_columns_map_to_rows_and_extra_columns_become_metadata(
    api: str, name: str, tmp_path: Path
) -> None:
    path = tmp_path / "support.csv"
    path.write_text(
        "\ufeffid,input,expected,metadata,topic\n"
        'a1,"Where is my order, please?",Tracking link,"{""priority"": 2}",orders\n'
        "\n"
        ',"multi\nline",,,billing\n',
        encoding="utf-8",
    )
    pushed = dataset(name, api_url=api).append(path)
    assert (pushed.version, pushed.rows, pushed.source) == (1, 2, "csv")
    assert _rows(name, api) == [
        {
            "id": "a1",
            "input": "Where is my order, please?",
            "expected": "Tracking link",
            "metadata": {"topic": "orders", "priority": 2},
        },
        {
            "id": row_id("multi\nline"),
            "input": "multi\nline",
            "expected": None,
            "metadata": {"topic": "billing"},
        },
    ]


def test_jsonl_keeps_json_values_and_skips_blank_lines(api: str, name: str, tmp_path: Path) -> None:
    path = tmp_path / "math.jsonl"
    lines = [
        {"input": {"a": 2, "b": 2}, "expected": 4},
        {"id": "neg", "input": {"a": -1, "b": 1}, "expected_output": 0, "metadata": ["x"]},
    ]
    path.write_text(json.dumps(lines[0]) + "\n\n" + json.dumps(lines[1]) + "\n")
    pushed = dataset(name, api_url=api).append(str(path), description="sums")
    assert (pushed.rows, pushed.source) == (2, "jsonl")
    assert _rows(name, api) == [
        {
            "id": row_id({"a": 2, "b": 2}),
            "input": {"a": 2, "b": 2},
            "expected": 4,
            "metadata": None,
        },
        {"id": "neg", "input": {"a": -1, "b": 1}, "expected": 0, "metadata": ["x"]},
    ]


BAD_FILES = [
    ("no-input.csv", "question,expected\nq,a\n", ["no-input.csv", "no 'input' column"]),
    (
        "bad-metadata.csv",
        'input,metadata\nok,"{}"\nq,{not json}\n',
        ["bad-metadata.csv line 3", "metadata is not valid JSON"],
    ),
    (
        "too-many-fields.csv",
        "input,expected\nq,a,extra\n",
        ["too-many-fields.csv line 2", "3 fields"],
    ),
    (
        "broken.jsonl",
        '{"input": 1}\n{"input": 2}\n{"input": 3,\n',
        ["broken.jsonl line 3", "not valid JSON"],
    ),
    (
        "unknown-key.jsonl",
        '{"input": 1, "tags": ["x"]}\n',
        ["unknown-key.jsonl line 1", "'tags'", "metadata"],
    ),
    ("no-input.jsonl", '{"expected": 1}\n', ["no-input.jsonl line 1", '"input"']),
    ("list.jsonl", "[1, 2]\n", ["list.jsonl line 1", "not a dict"]),
    (
        "doubled.jsonl",
        '{"id": "x", "input": 1}\n{"id": "x", "input": 2}\n',
        ["doubled.jsonl line 2", "same id 'x'", "line 1"],
    ),
    ("empty.jsonl", "\n\n", ["no rows"]),
    ("data.txt", "input\nq\n", ["unknown file type .txt"]),
]


@pytest.mark.parametrize(("file_name", "text", "fragments"), BAD_FILES)
def test_bad_files_name_the_line_and_store_nothing(
    api: str, name: str, tmp_path: Path, file_name: str, text: str, fragments: list[str]
) -> None:
    qa = dataset(name, api_url=api)
    qa.append([{"id": "keep", "input": "kept"}])
    path = tmp_path / file_name
    path.write_text(text)
    with pytest.raises(DatasetError) as raised:
        qa.append(path)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert [v.version for v in qa.versions()] == [1]
    assert [r.id for r in qa.rows()] == ["keep"]


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        ([{"input": "ok"}, {"input": "q", "metadata": {"when": {1, 2}}}], ["row 1", "metadata"]),
        ([{"input": float("nan")}], ["row 0", "input is not JSON"]),
        ([{"input": "q", "expected": 1, "expected_output": 1}], ["row 0", "both"]),
        ([{"input": "q", "id": 1.5}], ["row 0", "id must be a string or an integer"]),
        (["just a string"], ["row 0 is str"]),
        ({"input": "q"}, ["list of dicts"]),
        ([], ["no rows"]),
    ],
)
def test_bad_rows_from_lists_store_nothing(
    api: str, name: str, data: Any, fragments: list[str]
) -> None:
    qa = dataset(name, api_url=api)
    with pytest.raises(DatasetError) as raised:
        qa.append(data)
    for fragment in fragments:
        assert fragment in str(raised.value)
    assert name not in _names(api)


def test_invalid_names_and_versions_are_refused_before_any_request() -> None:
    for name in ("", "a/b", "../etc", "x" * 129, "-lead", "sp ace"):
        with pytest.raises(DatasetError, match="invalid dataset name"):
            dataset(name, api_url="http://127.0.0.1:9")
    with pytest.raises(DatasetError, match="version must be an integer >= 1"):
        dataset("qa", version=0, api_url="http://127.0.0.1:9")


def test_unknown_dataset_and_version_say_what_to_do(api: str, name: str) -> None:
    with pytest.raises(ApiError) as raised:
        dataset("nope", api_url=api).rows()
    assert raised.value.status == 404
    assert "no dataset named 'nope'" in str(raised.value)
    assert "append" in str(raised.value)
    qa = dataset(name, api_url=api)
    qa.append([{"input": 1}])
    qa.append([{"input": 2}])
    with pytest.raises(ApiError, match=r"has no version 9; it has versions 1\.\.2"):
        qa.at(9).rows()


def test_large_push_is_chunked_paged_and_committed_as_one_version(
    api: str, name: str, shared_store: Store
) -> None:
    big = dataset(name, api_url=api)
    pushed = big.append([{"id": f"{i:05d}", "input": {"n": i}} for i in range(12_500)])
    assert (pushed.version, pushed.rows, pushed.changed) == (1, 12_500, 12_500)
    staged = shared_store.query(
        "SELECT uniqExact(push_id), count() FROM evalhouse_dataset_staging "
        "WHERE dataset = {n:String}",
        {"n": name},
    )
    assert staged == [(1, 12_500)]
    rows = big.rows()  # two pages of at most 10,000 rows
    assert len(rows) == 12_500
    assert [r.id for r in rows[9_998:10_002]] == ["09998", "09999", "10000", "10001"]
    assert rows[-1] == DatasetRow("12499", {"n": 12_499})


def test_interrupted_push_stays_invisible_and_retries_are_not_repeated(api: str, name: str) -> None:
    client = ApiClient(api)
    pushes = f"/api/datasets/{name}/pushes/{uuid.uuid4().hex}"
    client.post(f"{pushes}/rows", {"offset": 0, "rows": [{"id": "a", "input": 1}]})
    with pytest.raises(ApiError, match="1 of its 2 rows staged; send the missing chunks") as raised:
        client.post(f"{pushes}/commit", {"rows": 2})
    assert raised.value.status == 400
    with pytest.raises(ApiError, match="no dataset named"):
        client.get(f"/api/datasets/{name}")

    # The missing chunk, sent twice (a retry), then the commit, sent twice.
    for _ in range(2):
        client.post(f"{pushes}/rows", {"offset": 1, "rows": [{"id": "b", "input": 2}]})
    first = client.post(f"{pushes}/commit", {"rows": 2, "description": "retried"})
    again = client.post(f"{pushes}/commit", {"rows": 2, "description": "retried"})
    assert first == again
    assert (first["version"], first["rows"]) == (1, 2)
    assert [v.version for v in dataset(name, api_url=api).versions()] == [1]
    assert [r.id for r in dataset(name, api_url=api).rows()] == ["a", "b"]


def test_api_refuses_malformed_requests_with_a_reason(api: str, name: str) -> None:
    client = ApiClient(api)
    cases: list[tuple[str, Any, str]] = [
        (f"/api/datasets/{name}", {"rows": "nope"}, '"rows" must be a list'),
        (f"/api/datasets/{name}", {"rows": [{"input": 1, "deleted": "yes"}]}, "unknown key"),
        (f"/api/datasets/{name}", {"rows": [{"input": 1}], "push_id": "x"}, "invalid push id"),
        (f"/api/datasets/{name}/pushes/abcdefgh/rows", {"rows": []}, '"offset" must be'),
        (f"/api/datasets/{name}/pushes/abcdefgh/commit", {"rows": 0}, '"rows" must be the number'),
        (f"/api/datasets/{name}/from-experiment", {}, '"experiment" must name'),
        (
            f"/api/datasets/{name}",
            {"rows": [{"id": "x", "input": 1}, {"id": "x", "input": 2}]},
            "rows 0, 1 of the push share the id 'x'",
        ),
    ]
    for path, payload, fragment in cases:
        with pytest.raises(ApiError) as raised:
            client.post(path, payload)
        assert raised.value.status == 400, path
        assert fragment in str(raised.value), (path, str(raised.value))
    with pytest.raises(ApiError, match="body is not valid JSON"):
        client.request("POST", f"/api/datasets/{name}", body=b"{nope")
    with pytest.raises(ApiError, match="limit=0"):
        client.get(f"/api/datasets/{name}", {"limit": 0})
    assert name not in _names(api)


def test_api_key_is_required_when_configured(
    start_api: Callable[..., str], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = start_api(frozenset({"s3cret"}))
    monkeypatch.delenv("EVALHOUSE_API_KEY", raising=False)
    with pytest.raises(ApiError) as raised:
        dataset(name, api_url=api).append([{"input": 1}])
    assert raised.value.status == 401
    assert "API key" in str(raised.value)
    with pytest.raises(ApiError, match="API key"):
        list_datasets(api_url=api)

    dataset(name, api_url=api, api_key="s3cret").append([{"input": 1}])
    monkeypatch.setenv("EVALHOUSE_API_KEY", "s3cret")
    monkeypatch.setenv("EVALHOUSE_API_URL", api)
    assert name in {info.name for info in list_datasets()}
    assert [row.input for row in dataset(name).rows()] == [1]


def test_unreachable_api_names_the_url_and_what_to_do() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ApiUnreachable) as raised:
        list_datasets(api_url=url)
    assert url in str(raised.value)
    assert "evalhouse serve" in str(raised.value)


def _eval_spans(
    experiment: str,
    experiment_id: str,
    rows: list[dict[str, Any]],
    start: int,
) -> list[dict[str, Any]]:
    spans = []
    for index, row in enumerate(rows):
        trace = uuid.uuid4().bytes
        attrs: dict[str, Any] = {
            contract.SPAN_PURPOSE: "eval",
            contract.EXPERIMENT_NAME: experiment,
            contract.EXPERIMENT_ID: experiment_id,
            contract.TRIAL: row.get("trial", 0),
            contract.OUTPUT: json.dumps(f"output {index}"),
        }
        if row.get("row_id"):
            attrs[contract.DATASET_ROW_ID] = row["row_id"]
        for key, attribute in (
            ("input", contract.INPUT),
            ("expected", contract.EXPECTED),
            ("metadata", contract.METADATA),
        ):
            if key in row:
                attrs[attribute] = json.dumps(row[key])
        if "raw_input" in row:
            attrs[contract.INPUT] = row["raw_input"]
        root = span(f"eval {index}", attrs, trace_id=trace, start_ns=start + index * MS)
        task = span(
            "task",
            {contract.SPAN_PURPOSE: "task", contract.INPUT: "ignored"},
            trace_id=trace,
            parent_span_id=root["span_id"],
            start_ns=start + index * MS,
        )
        spans += [root, task]
    return spans


def _seed(store: Store, spans: list[dict[str, Any]]) -> None:
    request = trace_request(spans, service="eval-runner")
    OtlpSink(store).insert_otlp(
        "traces", _length_delimited([request.SerializeToString()]), uuid.uuid4().hex
    )


def test_experiment_reopens_as_a_new_dataset_version(
    api: str, name: str, shared_store: Store
) -> None:
    now = time.time_ns() - 3_600_000 * MS
    first_run = [
        {"row_id": "r1", "input": {"q": "capital of France"}, "expected": "Paris"},
        {
            "row_id": "r2",
            "input": {"q": "2+2"},
            "expected": 4,
            "metadata": {"topic": "math"},
        },
        {"row_id": "r1", "trial": 1, "input": {"q": "trial 1 copy"}, "expected": "x"},
        {"input": "no row id", "expected": None},
        {"row_id": "r3", "raw_input": "plain text, not JSON"},
    ]
    _seed(shared_store, _eval_spans("capitals", "exp-1", first_run, now))
    # A later run under the same name, and an unrelated experiment.
    _seed(
        shared_store,
        _eval_spans("capitals", "exp-2", [{"row_id": "z", "input": "later"}], now + 10**9),
    )
    _seed(shared_store, _eval_spans("other", "exp-9", [{"row_id": "o", "input": "other"}], now))

    reopened = dataset(name, api_url=api)
    pushed = reopened.append_experiment("exp-1", description="from exp-1")
    assert (pushed.version, pushed.rows, pushed.source) == (1, 4, "experiment:exp-1")
    assert _rows(name, api) == [
        {"id": "r1", "input": {"q": "capital of France"}, "expected": "Paris", "metadata": None},
        {"id": "r2", "input": {"q": "2+2"}, "expected": 4, "metadata": {"topic": "math"}},
        {"id": row_id("no row id"), "input": "no row id", "expected": None, "metadata": None},
        {"id": "r3", "input": "plain text, not JSON", "expected": None, "metadata": None},
    ]

    # By name: the latest run with that name, appended as version 2.
    by_name = reopened.append_experiment("capitals")
    assert (by_name.version, by_name.rows, by_name.source) == (2, 5, "experiment:exp-2")

    with pytest.raises(ApiError) as raised:
        reopened.append_experiment("no-such-experiment")
    assert raised.value.status == 404
    assert "no experiment with id or name 'no-such-experiment'" in str(raised.value)


def test_documented_sql_reads_the_same_rows_as_the_api(api: str, shared_store: Store) -> None:
    examples = sql_examples((ROOT / "docs" / "sql.md").read_text(encoding="utf-8"))
    qa = dataset("support-qa", api_url=api)
    qa.append([{"id": "a", "input": "q1"}, {"id": "b", "input": "q2", "metadata": {"k": 1}}])
    qa.append([{"id": "a", "input": "q1", "expected": "fixed"}, {"id": "c", "input": "q3"}])
    qa.delete(["b"])

    output = shared_store.readonly_query(examples["rows of a dataset version"], "JSONEachRow")
    documented = [json.loads(line) for line in output.decode().splitlines()]
    assert [
        {key: json.loads(row[key]) for key in ("input", "expected", "metadata")}
        | {"id": row["row_id"]}
        for row in documented
    ] == [dict(row) for row in qa.rows()]
    assert [row["row_id"] for row in documented] == ["a", "c"]

    output = shared_store.readonly_query(examples["dataset versions"], "JSONEachRow")
    versions = {row["dataset"]: row for row in map(json.loads, output.decode().splitlines())}
    assert (versions["support-qa"]["latest_version"], int(versions["support-qa"]["row_count"])) == (
        3,
        2,
    )


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def test_run_experiment_over_a_dataset_labels_rows_and_reopens_as_the_same_rows(
    api: str, name: str, shared_store: Store, spans: InMemorySpanExporter
) -> None:
    qa = dataset(name, api_url=api)
    qa.append(
        [
            {"id": "fr", "input": "france", "expected": "PARIS", "metadata": {"region": "eu"}},
            {"input": "japan", "expected": "KYOTO", "metadata": {"region": "asia"}},
        ]
    )
    qa.append([{"id": "fr", "input": "france", "expected": "Paris", "metadata": {"v": 2}}])

    def capital(country: str) -> str:
        return {"france": "Paris", "japan": "Tokyo"}[country]

    def exact(output: str, expected: str) -> bool:
        return output == expected

    result = qa.run_experiment("capitals-from-dataset", capital, scorers=[exact])
    assert result.scorers["exact"].mean == 0.5
    finished_spans = finished(spans)
    roots = by_purpose(finished_spans, "eval")
    assert {attr(root, contract.DATASET_NAME) for root in roots} == {name}
    assert {str(attr(root, contract.DATASET_VERSION)) for root in roots} == {"2"}
    assert {attr(root, contract.DATASET_ROW_ID) for root in roots} == {"fr", row_id("japan")}

    # The spans, stored as the collector stores them, reopen as the dataset's rows.
    request = encode_spans(finished_spans)
    OtlpSink(shared_store).insert_otlp(
        "traces", _length_delimited([request.SerializeToString()]), uuid.uuid4().hex
    )
    copy = dataset(f"{name}-copy", api_url=api)
    copy.append_experiment(result.experiment_id)
    assert sorted(map(dict, copy.rows()), key=str) == sorted(map(dict, qa.rows()), key=str)


def test_run_experiment_with_an_unpinned_dataset_labels_the_version_it_read(
    api: str, name: str, spans: InMemorySpanExporter
) -> None:
    qa = dataset(name, api_url=api)
    qa.append([{"input": "france", "expected": "Paris"}])
    qa.append([{"input": "japan", "expected": "Tokyo"}])

    from evalhouse.instrumentation import run_experiment

    result = run_experiment("unpinned", data=qa, task=lambda country: country)
    assert len(result.rows) == 2
    roots = by_purpose(finished(spans), "eval")
    assert {str(attr(root, contract.DATASET_VERSION)) for root in roots} == {"2"}
    assert {attr(root, contract.DATASET_NAME) for root in roots} == {name}
