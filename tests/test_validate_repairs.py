"""The collector's repairs, item by item: in a request that needs some, each span that needs a
repair gets exactly it, and the spans that need none are stored as they were sent
(``collector/_validate.py``)."""

from __future__ import annotations

from otlp_builders import span, trace_request

from evalhouse.collector._validate import TRUNCATION_MARKER, prepare
from evalhouse.store import lenient_class

LIMIT = 1024


def test_each_span_of_a_request_gets_its_own_repair_and_the_rest_are_kept_as_sent() -> None:
    request = trace_request(
        [
            span("plain", {"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 3}),
            span("array", {"gen_ai.response.finish_reasons": ["stop", "length"]}),
            span("bad utf-8", {"text": "replaced below"}),
            span("long", {"text": "x" * 5000}),
            span("deep", {"nested": [[["stop"]]]}),
        ]
    )
    # Invalid UTF-8 goes in through the lenient classes (the SDK's own refuse to hold it).
    lenient = lenient_class("traces").FromString(request.SerializeToString())
    sent = lenient.resource_spans[0].scope_spans[0].spans
    sent[2].attributes[0].value.string_value = b"ab\xffcd"
    plain = sent[0].SerializeToString()

    prepared = prepare("traces", lenient.SerializeToString(), LIMIT)

    assert (prepared.accepted, prepared.rejected) == (5, 0)
    assert (prepared.utf8_repaired, prepared.truncated) == (1, 1)
    stored = lenient_class("traces").FromString(prepared.payload)
    spans = stored.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == [b"plain", b"array", b"bad utf-8", b"long", b"deep"]
    assert spans[0].SerializeToString() == plain
    values = [s.attributes[0].value for s in spans]
    assert values[1].string_value == b'["stop","length"]'
    assert values[2].string_value == "ab\ufffdcd".encode()
    marker = TRUNCATION_MARKER.format(dropped=5000 - LIMIT).encode()
    assert values[3].string_value == b"x" * LIMIT + marker
    assert values[4].string_value == b'[[["stop"]]]'


def test_a_request_that_needs_no_repair_is_stored_byte_for_byte() -> None:
    raw = trace_request([span("a", {"k": "v"}), span("b", {"n": 1.5})]).SerializeToString()
    prepared = prepare("traces", raw, LIMIT)
    assert (prepared.payload, prepared.accepted) == (raw, 2)
