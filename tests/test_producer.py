"""The producer helper for backends, against the real broker and a real connector."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from opentelemetry.sdk.trace import TracerProvider

from connector import stack
from connector.errors import ConfigurationError
from connector.events import NotificationRequest, Status
from connector.producer import OutcomeTimedOut, PublishFailed, RequestProducer
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
UNREGISTERED_AT_MS = 1_700_000_000_123


def request(request_id: str, token: str | None = None) -> NotificationRequest:
    return NotificationRequest(
        id=request_id,
        device_token=token or secrets.token_hex(32),
        topic=BUNDLE_ID,
        alert="hi",
    )


def producer_for(run: stack.Run) -> RequestProducer:
    return RequestProducer(
        run.bootstrap, requests_topic=run.requests, results_topic=run.results
    )


async def read_requests(run: stack.Run, count: int) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(
        run.requests, bootstrap_servers=run.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


async def test_send_publishes_keyed_by_id_with_the_trace_context(
    run: stack.Run,
) -> None:
    tracer = TracerProvider().get_tracer("backend")
    sent = request("traced-1")

    async with producer_for(run) as producer:
        with tracer.start_as_current_span("checkout") as span:
            await producer.send(sent)
        await producer.send(request("untraced-1"))

    records = {r.key: r for r in await read_requests(run, 2)}
    traced = records[b"traced-1"]
    assert msgspec.json.decode(traced.value, type=NotificationRequest) == sent
    context = span.get_span_context()
    traceparent = (
        f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    )
    assert context.trace_flags.sampled
    assert traced.headers == (("traceparent", traceparent.encode()),)
    # Outside a span there is no context to pass on.
    assert records[b"untraced-1"].headers == ()


async def test_send_and_await_outcome_returns_what_the_connector_published(
    run: stack.Run, simulator: Simulator
) -> None:
    dead = secrets.token_hex(32)
    simulator.register_unregistered(dead, UNREGISTERED_AT_MS)
    connector = run.start_connector()
    try:
        async with producer_for(run) as producer:
            delivered, rejected = await asyncio.gather(
                producer.send_and_await_outcome(request("await-1"), timeout_s=60),
                producer.send_and_await_outcome(request("await-2", dead), timeout_s=60),
            )
    finally:
        assert connector.stop() == 0

    assert (delivered.request_id, delivered.status, delivered.http_status) == (
        "await-1",
        Status.DELIVERED,
        200,
    )
    assert (
        rejected.request_id,
        rejected.status,
        rejected.reason,
        rejected.invalidated_at_ms,
    ) == ("await-2", Status.REJECTED, "Unregistered", UNREGISTERED_AT_MS)


async def test_no_outcome_within_the_timeout_raises_outcome_timed_out(
    run: stack.Run,
) -> None:
    async with producer_for(run) as producer:
        with pytest.raises(OutcomeTimedOut) as raised:
            await producer.send_and_await_outcome(request("lonely-1"), timeout_s=0.5)

    assert isinstance(raised.value, TimeoutError)
    assert str(raised.value) == (
        f"no outcome for request 'lonely-1' on {run.results} within 0.5 s"
    )
    # The request itself was published: a connector started later delivers it.
    assert [r.key for r in await read_requests(run, 1)] == [b"lonely-1"]


async def test_a_missing_requests_topic_is_a_configuration_error(
    kafka_bootstrap: str,
) -> None:
    topic = f"t{secrets.token_hex(4)}.apns.requests"
    producer = RequestProducer(kafka_bootstrap, requests_topic=topic)

    with pytest.raises(ConfigurationError) as raised:
        await producer.start()

    assert str(raised.value) == (
        f"kafka topic {topic} does not exist on {kafka_bootstrap}"
    )


async def test_an_unreachable_broker_fails_the_start() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{unused.getsockname()[1]}"
    producer = RequestProducer(bootstrap)

    with pytest.raises(PublishFailed) as raised:
        await producer.start()

    assert str(raised.value) == f"cannot connect to kafka at {bootstrap}"
    assert raised.value.retriable is True
