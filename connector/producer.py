"""Publishing notification requests from a backend, and awaiting their outcomes.

    async with RequestProducer("kafka-0.kafka:9092") as producer:
        request = NotificationRequest(
            id="order-4711-shipped",
            device_token=token,
            topic="com.example.shop",
            aps={"alert": {"title": "Shipped", "body": "Your order is on its way"}},
        )
        await producer.send(request)                         # the broker has it
        outcome = await producer.send_and_await_outcome(request)  # ... and Apple answered

A request is keyed by its id, so a resend lands in the same partition and the connector
derives the same apns-id from it. The caller's OpenTelemetry context travels in the
record's headers (W3C `traceparent`, through the globally configured propagator), so
the connector's spans join the backend's trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError, NoError, for_code
from opentelemetry import propagate

from connector.errors import ConfigurationError, ConnectorError
from connector.events import NotificationRequest, Outcome, encoder
from connector.settings import KafkaSettings

log = logging.getLogger(__name__)

_outcome_decoder = msgspec.json.Decoder(Outcome)
_READ_WAIT_MS = 200


class PublishFailed(ConnectorError):
    """The broker did not take a request, or could not be reached."""

    retriable = True


class OutcomeTimedOut(ConnectorError, TimeoutError):
    """No outcome for the request appeared within the time allowed."""

    retriable = True


def kafka_problem(bootstrap: str, error: KafkaError) -> str:
    """What went wrong with Kafka, in one line."""
    if isinstance(error, KafkaConnectionError):
        return f"cannot connect to kafka at {bootstrap}"
    # aiokafka's errors name their class first.
    return f"kafka at {bootstrap}: {error}"


def trace_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka record headers (empty outside a span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(name, value.encode()) for name, value in carrier.items()]


class RequestProducer:
    """Writes requests to the requests topic; reads outcomes when asked to wait."""

    def __init__(
        self,
        bootstrap: str,
        *,
        requests_topic: str = "apns.requests",
        results_topic: str = "apns.results",
        client_id: str = "apns-producer",
    ) -> None:
        self.bootstrap = bootstrap
        self.requests_topic = requests_topic
        self.results_topic = results_topic
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._outcomes: _OutcomeReader | None = None
        self._outcomes_starting = asyncio.Lock()

    @classmethod
    def from_settings(cls, kafka: KafkaSettings) -> RequestProducer:
        """A producer for the topics the connector's settings name."""
        return cls(
            kafka.bootstrap,
            requests_topic=kafka.requests_topic,
            results_topic=kafka.results_topic,
        )

    async def start(self) -> None:
        """Connect, and check that the requests topic exists."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        try:
            await producer.start()
            metadata = await producer.client.fetch_all_metadata()
        except KafkaError as exc:
            await producer.stop()
            raise PublishFailed(kafka_problem(self.bootstrap, exc)) from exc
        self._producer = producer

        if self.requests_topic not in metadata.topics():
            await self.stop()
            raise _missing_topic(self.requests_topic, self.bootstrap)

    async def stop(self) -> None:
        """Send what is buffered, then disconnect."""
        if self._outcomes is not None:
            await self._outcomes.stop()
            self._outcomes = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def send(self, request: NotificationRequest) -> None:
        """Publish `request`; return once the broker has acknowledged it."""
        await (await self.submit(request.id, encoder.encode(request)))

    async def submit(self, request_id: str, value: bytes) -> asyncio.Future[None]:
        """Queue one encoded request; the future is done once the broker has it.

        Many requests submitted before their futures are awaited share batches, which
        is the fast way to publish many.
        """
        if self._producer is None:
            raise RuntimeError("start() the producer first")
        try:
            ack = await self._producer.send(
                self.requests_topic,
                value,
                key=request_id.encode(),
                headers=trace_headers(),
            )
        except KafkaError as exc:
            raise PublishFailed(f"request {request_id!r}: {exc}") from exc
        return _translated(ack, request_id)

    async def send_and_await_outcome(
        self, request: NotificationRequest, *, timeout_s: float = 30.0
    ) -> Outcome:
        """Publish `request` and return its outcome from the results topic.

        Raises `OutcomeTimedOut` when none appears within `timeout_s`; the request
        may still be delivered later.
        """
        outcomes = await self._outcome_reader()

        # Expected before it is sent, so an outcome read at once is not missed.
        waiter = outcomes.expect(request.id)
        try:
            await self.send(request)
            async with asyncio.timeout(timeout_s):
                return await waiter
        except TimeoutError as exc:
            raise OutcomeTimedOut(
                f"no outcome for request {request.id!r} on {self.results_topic} "
                f"within {timeout_s:g} s"
            ) from exc
        finally:
            outcomes.forget(request.id, waiter)

    async def _outcome_reader(self) -> _OutcomeReader:
        # One reader for every waiting call; the first call starts it.
        async with self._outcomes_starting:
            if self._outcomes is None:
                outcomes = _OutcomeReader(self.bootstrap, self.results_topic)
                await outcomes.start()
                self._outcomes = outcomes
        return self._outcomes


class _OutcomeReader:
    """Reads the results topic from its end and hands outcomes to their waiters."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._failure: ConnectorError | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
        )
        try:
            partitions = await topic_partitions(self._bootstrap, [self._topic])
            await consumer.start()
            consumer.assign(partitions)

            # The positions are fixed now, before any request is sent: an outcome
            # written from here on is read, whenever the first fetch happens.
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)
        except KafkaError as exc:
            await consumer.stop()
            raise PublishFailed(kafka_problem(self._bootstrap, exc)) from exc
        except BaseException:
            await consumer.stop()
            raise

        self._consumer = consumer
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    def expect(self, request_id: str) -> asyncio.Future[Outcome]:
        waiter = asyncio.get_running_loop().create_future()
        if self._failure is not None:
            waiter.set_exception(self._failure)
        else:
            self._waiters.setdefault(request_id, []).append(waiter)
        return waiter

    def forget(self, request_id: str, waiter: asyncio.Future[Outcome]) -> None:
        waiting = self._waiters.get(request_id, [])
        if waiter in waiting:
            waiting.remove(waiter)
        if not waiting:
            self._waiters.pop(request_id, None)

    async def _read(self) -> None:
        assert self._consumer is not None
        try:
            while True:
                batches = await self._consumer.getmany(timeout_ms=_READ_WAIT_MS)
                for records in batches.values():
                    for record in records:
                        self._settle(record.key, record.value)
        except KafkaError as exc:
            self._fail(PublishFailed(f"reading {self._topic}: {exc}"))

    def _settle(self, key: bytes | None, value: bytes | None) -> None:
        # Outcomes are keyed by request id: only awaited ones are decoded.
        if key is None or value is None:
            return
        waiting = self._waiters.pop(key.decode("utf-8", "replace"), None)
        if not waiting:
            return
        try:
            outcome = _outcome_decoder.decode(value)
        except msgspec.DecodeError as exc:
            log.warning("undecodable outcome", extra={"error": str(exc)})
            return
        for waiter in waiting:
            if not waiter.done():
                waiter.set_result(outcome)

    def _fail(self, failure: ConnectorError) -> None:
        self._failure = failure
        for waiting in self._waiters.values():
            for waiter in waiting:
                if not waiter.done():
                    waiter.set_exception(failure)
        self._waiters.clear()


async def topic_partitions(
    bootstrap: str, topics: Sequence[str]
) -> list[TopicPartition]:
    """Every partition of the topics; a topic that does not exist is a
    `ConfigurationError` naming it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await admin.start()
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()

    partitions = {
        topic["topic"]: sorted(p["partition"] for p in topic["partitions"])
        for topic in described
        if for_code(topic["error_code"]) is NoError
    }
    for topic in topics:
        if topic not in partitions:
            raise _missing_topic(topic, bootstrap)
    return [TopicPartition(topic, p) for topic in topics for p in partitions[topic]]


def _missing_topic(topic: str, bootstrap: str) -> ConfigurationError:
    return ConfigurationError(f"kafka topic {topic} does not exist on {bootstrap}")


def _translated(ack: asyncio.Future[Any], request_id: str) -> asyncio.Future[None]:
    """A future that follows the broker's ack, with its error in our terms."""
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(ack: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        if ack.cancelled():
            done.cancel()
        elif isinstance(ack.exception(), KafkaError):
            failure = PublishFailed(f"request {request_id!r}: {ack.exception()}")
            failure.__cause__ = ack.exception()
            done.set_exception(failure)
        elif ack.exception() is not None:
            done.set_exception(ack.exception())  # type: ignore[arg-type]
        else:
            done.set_result(None)

    ack.add_done_callback(settle)
    return done
