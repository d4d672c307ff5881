"""What the telemetry tests share: a simulator that answers some tokens badly, a run's
own topics on the shared broker, the mixed requests they send, and ways to run the
connector inside the test's event loop and to read records back with their headers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from opentelemetry.trace import TracerProvider

from connector import stack
from connector.apns.reasons import Reason
from connector.events import NotificationRequest, encoder
from connector.kafka.topics import ensure_topics
from connector.service import Service
from connector.settings import Settings
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
DEAD_SINCE_MS = 1_700_000_000_123


@dataclass(frozen=True)
class Request:
    """One record for the requests topic, with the producer's trace context."""

    key: str
    value: bytes
    trace_id: int
    parent_span_id: int
    # The outcome the connector must give it: (status, reason).
    expected: tuple[str, str | None]
    traced: bool = True

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        if not self.traced:
            return []
        traceparent = f"00-{self.trace_id:032x}-{self.parent_span_id:016x}-01"
        return [("traceparent", traceparent.encode())]


@dataclass(frozen=True)
class Tokens:
    good: list[str] = field(default_factory=lambda: [_hex() for _ in range(3)])
    dead: list[str] = field(default_factory=lambda: [_hex() for _ in range(2)])
    throttled: str = field(default_factory=lambda: _hex())
    # Not hex: refused by the connector itself, never sent.
    malformed: str = field(default_factory=lambda: "zz" + secrets.token_hex(31))

    @property
    def all(self) -> list[str]:
        return [*self.good, *self.dead, self.throttled, self.malformed]


def _hex() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def tokens() -> Tokens:
    return Tokens()


@pytest.fixture
def mixed(tokens: Tokens) -> list[Request]:
    """Delivered, Unregistered, TooManyRequests, a malformed token, undecodable."""

    def request(
        key: str, token: str, expected: tuple[str, str | None], traced: bool = True
    ) -> Request:
        value = encoder.encode(
            NotificationRequest(
                id=key, device_token=token, topic=BUNDLE_ID, aps={"alert": "hi"}
            )
        )
        return Request(key, value, _trace_id(), _span_id(), expected, traced)

    delivered = ("delivered", None)
    return [
        request("ok-1", tokens.good[0], delivered),
        request("ok-2", tokens.good[1], delivered),
        # A producer that does not trace: the connector's span starts the trace.
        request("ok-3", tokens.good[2], delivered, traced=False),
        request("dead-1", tokens.dead[0], ("rejected", "Unregistered")),
        request("dead-2", tokens.dead[1], ("rejected", "Unregistered")),
        request("throttled", tokens.throttled, ("failed", "TooManyRequests")),
        request("bad-token", tokens.malformed, ("rejected", "BadDeviceToken")),
        Request(
            "garbage",
            b"\xff{not json",
            _trace_id(),
            _span_id(),
            ("rejected", "MalformedRequest"),
        ),
    ]


def _trace_id() -> int:
    return secrets.randbits(128) | 1


def _span_id() -> int:
    return secrets.randbits(64) | 1


@pytest.fixture
async def answering(
    credentials: stack.Credentials, tokens: Tokens
) -> AsyncIterator[Simulator]:
    async with Simulator(
        tls=credentials.tls,
        signing_keys=credentials.signing_keys,
        unregistered={token: DEAD_SINCE_MS for token in tokens.dead},
        injected={tokens.throttled: Reason.TOO_MANY_REQUESTS},
    ) as running:
        yield running


@pytest.fixture
async def telemetry_run(
    kafka_bootstrap: str,
    tmp_path: Path,
    credentials: stack.Credentials,
    answering: Simulator,
) -> stack.Run:
    run = stack.Run(kafka_bootstrap, tmp_path, credentials, answering.port, BUNDLE_ID)
    await ensure_topics(run.bootstrap, stack.topics(run.prefix))
    return run


# Kafka records with their headers


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class KafkaIO:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def produce(self, topic: str, requests: list[Request]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            sent = [
                await producer.send(
                    topic, r.value, key=r.key.encode(), headers=r.headers
                )
                for r in requests
            ]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    async def read(self, topic: str, count: int, timeout_s: float = 60) -> list[Record]:
        """Exactly `count` records of a topic from its start (fewer at the timeout)."""
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        read: list[Record] = []
        try:
            deadline = time.monotonic() + timeout_s
            while len(read) < count and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    read.extend(
                        Record(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value,
                            dict(r.headers),
                        )
                        for r in records
                    )
        finally:
            await consumer.stop()
        return read


@pytest.fixture
def kafka_io(kafka_bootstrap: str) -> KafkaIO:
    return KafkaIO(kafka_bootstrap)


# The connector in the test's event loop

Running = Callable[..., AbstractAsyncContextManager[Service]]


@pytest.fixture
def in_process() -> Running:
    """`async with in_process(settings, provider) as service:` runs the connector
    until the block ends, then drains and stops it."""

    @asynccontextmanager
    async def running(
        settings: Settings, provider: TracerProvider | None = None
    ) -> AsyncIterator[Service]:
        service = Service(settings, tracer_provider=provider)
        task = asyncio.create_task(service.run())
        try:
            yield service
        finally:
            service.request_stop()
            try:
                async with asyncio.timeout(60):
                    await task
            finally:
                await service.stop()

    return running
