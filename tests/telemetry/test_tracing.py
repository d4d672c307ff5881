"""Traces: one from the producer's `traceparent` through APNs to the outcome's headers,
with the connector in the test's event loop against the real broker and the
simulator; and the exporter the `OTEL_*` variables choose."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from connector import settings, stack
from connector.errors import ConfigurationError
from connector.simulator.server import Simulator
from connector.telemetry.tracing import (
    exporters_from_environment,
    provider_from_environment,
)

# The W3C trace flag that says the trace is recorded; others (random) may be set.
SAMPLED = 0x01
QUICK_RETRIES = {
    "APNS_CONNECTOR_DELIVERY__MAX_ATTEMPTS": "2",
    "APNS_CONNECTOR_DELIVERY__RETRY_BACKOFF_S": "0.01",
}
# What Apple answers each attempt of each request: (status, reason).
ATTEMPTS: dict[str, list[tuple[int, str | None]]] = {
    "ok-1": [(200, None)],
    "ok-2": [(200, None)],
    "ok-3": [(200, None)],
    "dead-1": [(410, "Unregistered")],
    "dead-2": [(410, "Unregistered")],
    "throttled": [(429, "TooManyRequests"), (429, "TooManyRequests")],
    "bad-token": [],
    "garbage": [],
}

Shape = tuple[str, SpanKind, dict[str, Any], StatusCode, list[Any]]


async def test_one_trace_runs_from_the_producer_through_apns_to_the_outcome(
    telemetry_run: stack.Run,
    answering: Simulator,
    mixed: list[Any],
    kafka_io: Any,
    in_process: Any,
) -> None:
    run = telemetry_run
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    loaded = settings.load(run.config, environ=QUICK_RETRIES)

    await kafka_io.produce(run.requests, mixed)
    async with in_process(loaded, provider):
        results = await kafka_io.read(run.results, len(mixed))
        invalid = await kafka_io.read(run.prefix + "apns.invalid-tokens", 3)
        dead_letters = await kafka_io.read(run.prefix + "apns.requests.dlq", 1)
    provider.shutdown()
    spans = exporter.get_finished_spans()

    outcomes = {r.key.decode(): (r, msgspec.json.decode(r.value)) for r in results}
    companions: dict[str, list[Any]] = {key: [] for key in outcomes}
    for record in invalid:
        companions[msgspec.json.decode(record.value)["request_id"]].append(record)
    for record in dead_letters:
        companions[record.key.decode()].append(record)
    assert {key: o["status"] for key, (_, o) in outcomes.items()} == {
        r.key: r.expected[0] for r in mixed
    }

    children: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        if span.parent is not None:
            children.setdefault(span.parent.span_id, []).append(span)
    processed = {
        span.attributes["messaging.kafka.message.key"]: span
        for span in spans
        if span.kind is SpanKind.CONSUMER and span.attributes is not None
    }

    # The exact tree, request by request.
    port = answering.port
    for request in mixed:
        record, outcome = outcomes[request.key]
        root = processed[request.key]
        assert shape(root, children) == expected_shape(
            request, outcome, [record, *companions[request.key]], run, port
        )

        # The producer's trace goes on through the connector to the outcome's readers.
        context = root.get_span_context()
        if request.traced:
            assert root.parent is not None and root.parent.is_remote
            assert root.parent.trace_id == request.trace_id
            assert root.parent.span_id == request.parent_span_id
            assert context.trace_id == request.trace_id
        else:
            assert root.parent is None
        sends = [s for s in children[context.span_id] if s.kind is SpanKind.PRODUCER]
        for sent, written in zip(sends, [record, *companions[request.key]]):
            version, trace_id, span_id, flags = (
                written.headers["traceparent"].decode().split("-")
            )
            assert (version, trace_id, span_id) == (
                "00",
                f"{context.trace_id:032x}",
                f"{sent.context.span_id:016x}",
            )
            assert int(flags, 16) & SAMPLED

    # Nothing else: 8 requests, 7 attempts, 8 outcomes, 3 invalid tokens, 1 dead letter.
    assert len(spans) == 8 + 7 + 8 + 3 + 1


def shape(span: ReadableSpan, children: dict[int, list[ReadableSpan]]) -> Shape:
    below = sorted(children.get(span.context.span_id, []), key=_started)
    return (
        span.name,
        span.kind,
        dict(span.attributes or {}),
        span.status.status_code,
        [shape(child, children) for child in below],
    )


def _started(span: ReadableSpan) -> int:
    return span.start_time or 0


def expected_shape(
    request: Any, outcome: dict[str, Any], written: list[Any], run: stack.Run, port: int
) -> Shape:
    status, reason = request.expected
    attempts = [
        attempt_shape(number, answer, outcome["apns_id"], port)
        for number, answer in enumerate(ATTEMPTS[request.key], start=1)
    ]
    sends = [
        send_shape(record, None if "invalid-tokens" in record.topic else request.key)
        for record in written
    ]
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": run.requests,
        "messaging.destination.partition.id": str(outcome["partition"]),
        "messaging.kafka.offset": outcome["offset"],
        "messaging.consumer.group.name": run.group,
        "messaging.kafka.message.key": request.key,
        "apns.status": status,
    }
    if reason is not None:
        attributes["apns.reason"] = reason
    return (
        f"process {run.requests}",
        SpanKind.CONSUMER,
        attributes,
        StatusCode.UNSET,
        [*attempts, *sends],
    )


def attempt_shape(
    number: int, answer: tuple[int, str | None], apns_id: str, port: int
) -> Shape:
    status, reason = answer
    attributes: dict[str, Any] = {
        "http.request.method": "POST",
        "server.address": "127.0.0.1",
        "server.port": port,
        "url.full": f"https://127.0.0.1:{port}/3/device/REDACTED",
        "url.template": "/3/device/{device_token}",
        "apns.id": apns_id,
        "http.response.status_code": status,
    }
    if number > 1:
        attributes["http.request.resend_count"] = number - 1
    if reason is not None:
        attributes["apns.reason"] = reason
        attributes["error.type"] = str(status)
    return (
        "POST /3/device/{device_token}",
        SpanKind.CLIENT,
        attributes,
        StatusCode.ERROR if status >= 400 else StatusCode.UNSET,
        [],
    )


def send_shape(record: Any, key: str | None) -> Shape:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
    }
    if key is not None:
        attributes["messaging.kafka.message.key"] = key
    return (f"send {record.topic}", SpanKind.PRODUCER, attributes, StatusCode.UNSET, [])


# The exporter


@pytest.fixture
def otel_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No OTEL_* variable but those the test sets."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, [OTLPSpanExporter]),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
            [OTLPSpanExporter],
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, [OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        (
            {"OTEL_TRACES_EXPORTER": "otlp, console"},
            [OTLPSpanExporter, ConsoleSpanExporter],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            },
            [],
        ),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            [OTLPSpanExporter],
        ),
    ],
)
def test_the_otel_variables_choose_the_exporter(
    otel_environment: pytest.MonkeyPatch,
    environ: dict[str, str],
    expected: list[type],
) -> None:
    for name, value in environ.items():
        otel_environment.setenv(name, value)

    exporters = exporters_from_environment()
    try:
        assert [type(exporter) for exporter in exporters] == expected
    finally:
        for exporter in exporters:
            exporter.shutdown()


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"OTEL_TRACES_EXPORTER": "zipkin"},
            "OTEL_TRACES_EXPORTER: 'zipkin' is not supported; use otlp, console or none",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' is not supported; "
                "the connector exports over http/protobuf"
            ),
        ),
    ],
)
def test_an_exporter_we_cannot_use_stops_the_connector_at_start(
    otel_environment: pytest.MonkeyPatch, environ: dict[str, str], message: str
) -> None:
    for name, value in environ.items():
        otel_environment.setenv(name, value)

    with pytest.raises(ConfigurationError) as raised:
        provider_from_environment()
    assert str(raised.value) == message


def test_the_service_is_named_unless_the_environment_names_it(
    otel_environment: pytest.MonkeyPatch,
) -> None:
    otel_environment.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = provider_from_environment()
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "apns-connector"
    provider.shutdown()

    otel_environment.setenv("OTEL_SERVICE_NAME", "push-eu")
    provider = provider_from_environment()
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "push-eu"
    provider.shutdown()


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"},
    ],
)
def test_without_an_exporter_no_span_is_made(
    otel_environment: pytest.MonkeyPatch, environ: dict[str, str]
) -> None:
    for name, value in environ.items():
        otel_environment.setenv(name, value)
    assert provider_from_environment() is None
