"""OTLP metrics, end to end: the real OTel SDK metric exporters (gRPC and HTTP) and raw OTLP
requests into a running collector, stored in the OTel Collector exporter's metrics tables."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import count, wait_for
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.metrics import Meter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from otlp_builders import attributes, span, trace_request
from test_collector_durability import OutageSink
from test_docs_sql import EXAMPLES

from evalhouse.collector._wal import Wal
from evalhouse.collector._writer import _length_delimited
from evalhouse.store import SIGNALS, OtlpSink, Store, migrate

METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
TABLES = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
# The GenAI semantic conventions' advised buckets for gen_ai.client.token.usage.
TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]


def grpc_export(address: str, body: bytes, method: str = METRICS, metadata: Any = None) -> Any:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        raw = call(body, metadata=metadata, timeout=30)
    response = ExportMetricsServiceResponse() if method == METRICS else ExportTraceServiceResponse()
    response.ParseFromString(raw)
    return response


def rows(store: Store, table: str, columns: str, where: str = "1") -> list[tuple[Any, ...]]:
    return list(
        store.query(f"SELECT {columns} FROM otel_metrics_{table} WHERE {where} ORDER BY ALL")
    )


def points(store: Store) -> int:
    return sum(count(store, f"SELECT count() FROM otel_metrics_{t}") for t in TABLES)


class Sdk:
    """A MeterProvider exporting through ``exporter`` only when flushed."""

    def __init__(self, exporter: MetricExporter, service: str) -> None:
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        self.provider = MeterProvider(
            resource=Resource.create({"service.name": service}),
            metric_readers=[reader],
            views=[
                View(instrument_name="gen_ai.client.token.usage"),
                View(
                    instrument_name="gen_ai.client.operation.duration",
                    aggregation=ExponentialBucketHistogramAggregation(),
                ),
                View(instrument_name="app.*"),
            ],
        )
        self.meter: Meter = self.provider.get_meter(
            "opentelemetry.instrumentation.openai_v2", "2.1b0"
        )
        self.tokens = self.meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )

    def usage(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """One chat call's token usage, as GenAI instrumentations record it."""
        for token_type, tokens in (("input", input_tokens), ("output", output_tokens)):
            self.tokens.record(
                tokens,
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": f"{model}-2024-07-18",
                    "gen_ai.token.type": token_type,
                },
            )

    def flush(self) -> None:
        assert self.provider.force_flush(timeout_millis=30_000)

    def shutdown(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def sdk() -> Iterator[Callable[[MetricExporter, str], Sdk]]:
    started: list[Sdk] = []

    def start(exporter: MetricExporter, service: str) -> Sdk:
        started.append(Sdk(exporter, service))
        return started[-1]

    yield start
    for one in started:
        one.shutdown()


def test_otel_sdk_grpc_and_http_metric_exporters_are_stored(
    start_collector: Any, store: Store, sdk: Callable[[MetricExporter, str], Sdk]
) -> None:
    _, addresses = start_collector()
    grpc_sdk = sdk(GrpcMetricExporter(endpoint=addresses.grpc, insecure=True), "grpc-app")
    http_sdk = sdk(
        HttpMetricExporter(endpoint=f"{addresses.http}/v1/metrics", compression=Compression.Gzip),
        "http-app",
    )
    for one in (grpc_sdk, http_sdk):
        meter = one.meter
        meter.create_counter("app.requests", unit="{request}").add(3, {"route": "/chat"})
        depth = meter.create_up_down_counter("app.queue.depth")
        depth.add(5)
        depth.add(-2)
        meter.create_gauge("app.temperature", unit="Cel").set(21.5, {"room": "lab"})
        duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
        duration.record(0.5)
        duration.record(1.5)
        one.usage("gpt-4o-mini", 100, 20)
        one.flush()

    # Per service: 2 sums, 1 gauge, 2 token histogram points, 1 exponential histogram.
    wait_for(lambda: points(store) == 12)
    for service in ("grpc-app", "http-app"):
        where = f"ServiceName = '{service}'"
        assert rows(
            store, "sum", "MetricName, Value, IsMonotonic, AggregationTemporality", where
        ) == [
            ("app.queue.depth", 3.0, False, 2),
            ("app.requests", 3.0, True, 2),
        ]
        assert rows(store, "gauge", "MetricName, MetricUnit, Attributes, Value", where) == [
            ("app.temperature", "Cel", {"room": "lab"}, 21.5)
        ]
        histogram = rows(
            store,
            "histogram",
            "Attributes['gen_ai.token.type'], Count, Sum, Min, Max, ExplicitBounds, "
            "BucketCounts, AggregationTemporality, MetricUnit, MetricDescription, "
            "ScopeName, ScopeVersion",
            where,
        )
        bounds = [float(b) for b in TOKEN_BUCKETS]
        scope = ("opentelemetry.instrumentation.openai_v2", "2.1b0")
        unit, description = "{token}", "Measures number of input and output tokens used"
        input_buckets = [0] * 4 + [1] + [0] * 8  # 100 is in (64, 256]
        output_buckets = [0] * 3 + [1] + [0] * 9  # 20 is in (16, 64]
        assert histogram == [
            ("input", 1, 100.0, 100.0, 100.0, bounds, input_buckets, 2, unit, description, *scope),
            ("output", 1, 20.0, 20.0, 20.0, bounds, output_buckets, 2, unit, description, *scope),
        ]
        (exponential,) = rows(
            store,
            "exponential_histogram",
            "MetricName, Count, Sum, Min, Max, arraySum(PositiveBucketCounts), ZeroCount",
            where,
        )
        assert exponential == ("gen_ai.client.operation.duration", 2, 2.0, 0.5, 1.5, 2, 0)
    # Times are the export's, in whole seconds; counters start when the provider did.
    assert store.query(
        "SELECT min(TimeUnix) > now() - INTERVAL 5 MINUTE, min(StartTimeUnix) > '2020-01-01' "
        "FROM otel_metrics_sum"
    ) == [(1, 1)]


def test_token_usage_by_model_doc_query_counts_cumulative_series_once(
    start_collector: Any, store: Store, sdk: Callable[[MetricExporter, str], Sdk]
) -> None:
    _, addresses = start_collector()
    first = sdk(GrpcMetricExporter(endpoint=addresses.grpc, insecure=True), "chat-app")
    second = sdk(HttpMetricExporter(endpoint=f"{addresses.http}/v1/metrics"), "chat-app-2")
    first.usage("gpt-4o-mini", 100, 20)
    first.usage("gpt-4o", 1000, 300)
    first.flush()
    # A cumulative exporter repeats each series' running total at every export.
    first.usage("gpt-4o-mini", 50, 5)
    first.flush()
    second.usage("gpt-4o-mini", 7, 1)
    second.flush()
    wait_for(lambda: count(store, "SELECT count() FROM otel_metrics_histogram") == 10)

    result = store.query(EXAMPLES["token usage by model"])

    assert [tuple(row) for row in result] == [
        ("gpt-4o", "input", 1000.0, 1),
        ("gpt-4o", "output", 300.0, 1),
        ("gpt-4o-mini", "input", 157.0, 3),
        ("gpt-4o-mini", "output", 26.0, 3),
    ]


def _request() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource = request.resource_metrics.add()
    resource.resource.attributes.extend(attributes({"service.name": "raw-client"}))
    resource.schema_url = "https://opentelemetry.io/schemas/1.37.0"
    scope = resource.scope_metrics.add()
    scope.scope.name = "raw"
    scope.scope.dropped_attributes_count = 2
    return request


def test_summaries_exemplars_and_bad_points_over_raw_grpc(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    now = 1_750_000_000 * 10**9
    request = _request()
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    summary = metrics.add(name="rpc.latency", unit="ms").summary.data_points.add(
        time_unix_nano=now, count=10, sum=55.5
    )
    summary.quantile_values.add(quantile=0.5, value=4.0)
    summary.quantile_values.add(quantile=0.99, value=20.0)
    gauge = metrics.add(name="queue.size").gauge
    good = gauge.data_points.add(time_unix_nano=now, as_int=42)
    good.attributes.extend(
        attributes({"queue": "jobs", "priority": 2, "urgent": True, "tags": ["a", "b"]})
    )
    good.exemplars.add(
        time_unix_nano=now, as_double=1.5, trace_id=b"\x0a" * 16, span_id=b"\x0b" * 8
    )
    gauge.data_points.add(time_unix_nano=2**32 * 10**9, as_double=1.0)  # after 2106
    gauge.data_points.add(time_unix_nano=now, as_double=2.0).exemplars.add(trace_id=b"\x01" * 5)

    response = grpc_export(addresses.grpc, request.SerializeToString())

    assert response.partial_success.rejected_data_points == 2
    message = response.partial_success.error_message
    assert "data point #1 of metric 'queue.size': time_unix_nano 4294967296000000000 is after" in (
        message
    )
    assert "2106-02-07T06:28:15Z" in message
    assert "data point #2 of metric 'queue.size': an exemplar's trace_id must be empty or 16 " in (
        message
    )
    wait_for(lambda: points(store) == 2)
    assert rows(
        store,
        "summary",
        "ServiceName, MetricName, MetricUnit, Count, Sum, ValueAtQuantiles.Quantile, "
        "ValueAtQuantiles.Value, toUnixTimestamp(TimeUnix), ResourceSchemaUrl, "
        "ScopeDroppedAttrCount",
    ) == [
        (
            "raw-client",
            "rpc.latency",
            "ms",
            10,
            55.5,
            [0.5, 0.99],
            [4.0, 20.0],
            1_750_000_000,
            "https://opentelemetry.io/schemas/1.37.0",
            2,
        )
    ]
    assert rows(
        store,
        "gauge",
        "Value, Attributes, Exemplars.Value, Exemplars.TraceId, Exemplars.SpanId, StartTimeUnix",
    ) == [
        (
            42.0,
            {"queue": "jobs", "priority": "2", "urgent": "true", "tags": '["a","b"]'},
            [1.5],
            ["0a" * 16],
            ["0b" * 8],
            store.query("SELECT toDateTime(0)")[0][0],
        )
    ]


def test_metrics_over_http_json_and_gzip_with_the_api_key_and_body_limit(
    start_collector: Any, store: Store
) -> None:
    secret = "metrics-key"
    collector, addresses = start_collector(api_keys=[secret], max_message_bytes=8192)
    url = f"{addresses.http}/v1/metrics"
    key = {"Authorization": f"Bearer {secret}"}
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    point = {
        "timeUnixNano": "1750000000000000000",
        "asInt": "7",
        "attributes": [{"key": "route", "value": {"stringValue": "/chat"}}],
        "exemplars": [{"asInt": "1", "traceId": trace_id, "spanId": span_id}],
    }
    service = {"attributes": [{"key": "service.name", "value": {"stringValue": "node-app"}}]}
    requests_sum = {
        "name": "http.server.requests",
        "sum": {
            "aggregationTemporality": 1,
            "isMonotonic": True,
            "dataPoints": [point, {**point, "timeUnixNano": "later"}],
        },
    }
    document = {
        "resourceMetrics": [{"resource": service, "scopeMetrics": [{"metrics": [requests_sum]}]}]
    }
    assert httpx.post(url, json=document).status_code == 401
    response = httpx.post(url, json=document, headers=key)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "1"
    message = partial["errorMessage"]
    assert "data point #1 of metric 'http.server.requests': not valid OTLP/JSON" in message

    request = _request()
    metric = request.resource_metrics[0].scope_metrics[0].metrics.add(name="gzip.gauge")
    metric.gauge.data_points.add(time_unix_nano=1_750_000_000 * 10**9, as_double=0.25)
    body = request.SerializeToString()
    protobuf = {"Content-Type": "application/x-protobuf", **key}
    gzipped = httpx.post(
        url, content=gzip.compress(body), headers={**protobuf, "Content-Encoding": "gzip"}
    )
    assert gzipped.status_code == 200
    assert ExportMetricsServiceResponse.FromString(gzipped.content).partial_success.ByteSize() == 0
    assert httpx.post(url, content=b"\x00" * 9000, headers=protobuf).status_code == 413
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(addresses.grpc, body)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert collector.metrics.snapshot()["unauthenticated_requests"] == 2

    wait_for(lambda: points(store) == 2)
    assert rows(
        store,
        "sum",
        "ServiceName, Value, AggregationTemporality, IsMonotonic, Exemplars.TraceId, "
        "Exemplars.SpanId, Exemplars.Value",
    ) == [("node-app", 7.0, 1, True, [trace_id], [span_id], [1.0])]
    assert rows(store, "gauge", "ServiceName, MetricName, Value") == [
        ("raw-client", "gzip.gauge", 0.25)
    ]


def test_metrics_are_spooled_with_spans_and_a_retry_is_not_duplicated(
    start_collector: Any, store: Store
) -> None:
    sink = OutageSink(store)
    collector, addresses = start_collector(sink=sink)
    request = _request()
    gauge = request.resource_metrics[0].scope_metrics[0].metrics.add(name="g").gauge
    for value in (1.0, 2.0, 3.0):
        gauge.data_points.add(time_unix_nano=1_750_000_000 * 10**9, as_double=value)
    body = request.SerializeToString()
    grpc_export(addresses.grpc, body)
    grpc_export(addresses.grpc, body)  # a client retrying after a lost answer
    grpc_export(addresses.grpc, trace_request([span("with-metrics")]).SerializeToString(), TRACES)
    wait_for(lambda: sink.attempts >= 2)
    snapshot = collector.metrics.snapshot()
    assert (snapshot["accepted"], snapshot["spool_spans"], snapshot["duplicate_requests"]) == (
        4,
        4,
        1,
    )
    assert points(store) == 0
    sink.down.clear()
    wait_for(lambda: points(store) == 3 and count(store) == 1, timeout=60)
    assert rows(store, "gauge", "Value") == [(1.0,), (2.0,), (3.0,)]


def test_a_metrics_batch_replayed_after_a_crash_is_stored_once(
    tmp_path: Path, store: Store
) -> None:
    assert SIGNALS.index("metrics") == 2  # WAL records of traces (0) and logs (1) keep theirs
    request = _request()
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    metrics.add(name="g").gauge.data_points.add(as_double=1.0)
    metrics.add(name="h").histogram.data_points.add(count=2, sum=3.0, bucket_counts=[2])
    metrics.add(name="s").summary.data_points.add(count=1, sum=1.0)
    wal = Wal(tmp_path, fsync=False)
    wal.append("metrics", os.urandom(16), 3, request.SerializeToString())
    wal.append("traces", os.urandom(16), 1, trace_request([span()]).SerializeToString())
    batch = wal.claim(10_000, 10**9)
    assert batch is not None and set(batch.payloads) == {"metrics", "traces"}
    sink = OtlpSink(store)

    def insert(payloads: dict[Any, list[bytes]], token: str) -> None:
        for signal, items in sorted(payloads.items()):
            sink.insert_otlp(signal, _length_delimited(items), f"{token}:{signal}")

    insert(batch.payloads, batch.token)
    wal.close()  # crash: inserted, never committed
    restarted = Wal(tmp_path, fsync=False)
    replay = restarted.claim(10_000, 10**9)
    assert replay is not None and (replay.start, replay.end) == (batch.start, batch.end)
    insert(replay.payloads, replay.token)
    restarted.commit(replay)
    restarted.close()
    assert [count(store, f"SELECT count() FROM otel_metrics_{t}") for t in TABLES] == [
        1,
        0,
        1,
        0,
        1,
    ]
    assert count(store) == 1


def test_cluster_insert_settings_carry_metrics_through_the_five_views_once(
    store: Store,
) -> None:
    """On a cluster an insert carries deduplication through the views into the Distributed
    tables; ClickHouse accepts those settings for metrics, and a retry still leaves one copy."""
    flagged = Store(store.dsn, database=store.database, cluster="evalhouse_cluster")
    request = _request()
    metrics = request.resource_metrics[0].scope_metrics[0].metrics
    metrics.add(name="s").sum.data_points.add(as_int=3)
    metrics.add(name="e").exponential_histogram.data_points.add(count=1, zero_count=1)
    payload = _length_delimited([request.SerializeToString()])
    try:
        for _ in range(3):
            OtlpSink(flagged).insert_otlp("metrics", payload, "batch-7:metrics")
    finally:
        flagged.close()
    assert [count(store, f"SELECT count() FROM otel_metrics_{t}") for t in TABLES] == [
        0,
        1,
        0,
        1,
        0,
    ]


# The exporter's histogram table as its releases before v0.160.0 created it (nanosecond
# times, String metric names, another sort key): evalhouse must fill it as it is.
EXPORTER_HISTOGRAM_DDL = """CREATE TABLE otel_metrics_histogram (
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1"""


def test_migrate_fills_a_metrics_table_an_older_exporter_created(bare_store: Store) -> None:
    bare_store.command(EXPORTER_HISTOGRAM_DDL)
    migrate(bare_store)
    request = _request()
    histogram = request.resource_metrics[0].scope_metrics[0].metrics.add(name="h").histogram
    histogram.data_points.add(
        time_unix_nano=1_750_000_000 * 10**9, count=3, sum=4.5, bucket_counts=[1, 2]
    ).explicit_bounds.append(1.0)
    payload = _length_delimited([request.SerializeToString()])
    for _ in range(2):  # a replayed batch is dropped here too
        OtlpSink(bare_store).insert_otlp("metrics", payload, "exporter-table:metrics")
    assert rows(bare_store, "histogram", "ServiceName, MetricName, Count, BucketCounts") == [
        ("raw-client", "h", 3, [1, 2])
    ]
    assert bare_store.query(
        "SELECT type FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'otel_metrics_histogram' AND name = 'TimeUnix'"
    ) == [("DateTime64(9)",)]
