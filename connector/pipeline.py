"""The one place where Kafka and APNs meet.

Records are read from the requests topic in a consumer group and each is delivered in a
task of its own, at most `max_in_flight` at a time. A task ends when its outcome (and
its invalid-token event or dead letter) is acknowledged by the broker; only then is its
offset marked finished, and a committer commits, per partition, the position before
which everything is finished. On a rebalance the revoked partitions' tasks finish, or
are abandoned at the drain deadline, before their offsets are committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from connector.apns.reasons import LocalReason
from connector.delivery import Delivery, Result, completed, now_ms
from connector.errors import DecodeError
from connector.events import (
    DEAD_LETTER_MAX_VALUE_BYTES,
    DeadLetter,
    Outcome,
    Status,
    Timings,
    decode_request,
    encoder,
)
from connector.offsets import OffsetTracker
from connector.redaction import token_digest
from connector.settings import Settings
from connector.telemetry.metrics import metrics
from connector.telemetry.tracing import (
    Sending,
    Tracing,
    record_failure,
    record_outcome,
)

log = logging.getLogger(__name__)

PUBLISH_RETRY_S = 1.0
LAG_INTERVAL_S = 1.0
MAX_KEY_CHARS = 512
PAUSE_AFTER_S = 0.25


class Pipeline(ConsumerRebalanceListener):  # type: ignore[misc]
    """Consumes requests, delivers them, publishes outcomes, commits offsets."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        delivery: Delivery,
        *,
        tracing: Tracing | None = None,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery
        self._tracing = tracing or Tracing()
        self._offsets = OffsetTracker()
        self._slots = asyncio.Semaphore(settings.delivery.max_in_flight)
        self._working = 0
        self._resume_at = -1
        self._room_freed = asyncio.Event()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._assigned: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self.processed = 0

    # The consumer loop

    async def run(self) -> None:
        """Consume until `stop()`, then drain in-flight work and commit."""
        committer = asyncio.create_task(self._commit_periodically())
        lag_reporter = asyncio.create_task(self._report_lag_periodically())
        try:
            while not self._stopping.is_set():
                room = await self._room()
                batches = await self._consumer.getmany(timeout_ms=200, max_records=room)
                for partition, records in batches.items():
                    await self._start_all(partition, records)
        finally:
            committer.cancel()
            lag_reporter.cancel()
            await self._drain(list(self._tasks))
            await self._commit(self._offsets.uncommitted())

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    @property
    def paused(self) -> frozenset[TopicPartition]:
        """Partitions not fetched now: the in-flight bound is reached."""
        return frozenset(self._consumer.paused())

    async def _room(self) -> int:
        """How many more requests may start; when full for long, fetching pauses.

        At full speed a tenth of the slots frees within moments: the loop waits for
        that, fetching on. Still full after `PAUSE_AFTER_S` means APNs is slow or
        gone: the partitions pause, so the pipeline holds its `max_in_flight`
        requests and no backlog, and resume once a quarter of the slots are free
        (not at the first, so they do not flap: each pause drops what aiokafka had
        fetched for them).
        """
        bound = self._settings.delivery.max_in_flight
        if self._working < bound:
            return bound - self._working

        if not await self._working_falls_to(bound - max(1, bound // 10), PAUSE_AFTER_S):
            self._consumer.pause(*self._consumer.assignment())
            try:
                await self._working_falls_to(bound - max(1, bound // 4))
            finally:
                self._consumer.resume(*self._consumer.paused())
        return bound - self._working

    async def _working_falls_to(
        self, level: int, timeout_s: float | None = None
    ) -> bool:
        """Wait until at most `level` requests are in flight; False on timeout."""
        # Checked after arming: requests may have finished while we were away.
        self._resume_at = level
        self._room_freed.clear()
        try:
            if self._working > level:
                async with asyncio.timeout(timeout_s):
                    await self._room_freed.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._resume_at = -1

    async def _start_all(
        self, partition: TopicPartition, records: Iterable[ConsumerRecord]
    ) -> None:
        for record in records:
            # No more were fetched than slots were free, so this does not wait.
            await self._slots.acquire()

            # The partition may have been revoked while we waited; its new owner
            # will read this record again.
            if partition not in self._assigned or self._stopping.is_set():
                self._slots.release()
                return

            self._offsets.start(partition, record.offset)
            self._working += 1
            task = asyncio.create_task(self._process(partition, record))
            self._tasks.setdefault(partition, set()).add(task)
            task.add_done_callback(self._tasks[partition].discard)

    # One record

    async def _process(self, partition: TopicPartition, record: ConsumerRecord) -> None:
        started = time.perf_counter()
        group = self._settings.kafka.group_id
        with self._tracing.processing(record, group) as span, metrics.working():
            try:
                result = await self._result_of(record)
                await self._publish(result, record)
                self._offsets.finish(partition, record.offset)
                self.processed += 1
                outcome = result.outcome
                record_outcome(span, outcome.status.value, outcome.reason)
                metrics.concluded(outcome, time.perf_counter() - started)
            except Exception as exc:
                # A bug, not an answer: the offset stays uncommitted, so the request
                # is read again after a restart instead of being lost.
                record_failure(span, exc)
                log.exception(
                    "request failed unexpectedly",
                    extra={"partition": record.partition, "offset": record.offset},
                )
            finally:
                self._slots.release()
                self._working -= 1
                if self._working <= self._resume_at:
                    self._room_freed.set()

    async def _result_of(self, record: ConsumerRecord) -> Result:
        # The key is the request id; a record without a usable one is named by
        # where it sits.
        key = record.key.decode("utf-8", "replace") if record.key else None
        if key is not None and len(key) > MAX_KEY_CHARS:
            key = None
        outcome = Outcome(
            request_id=key or f"{record.topic}/{record.partition}/{record.offset}",
            status=Status.FAILED,
            partition=record.partition,
            offset=record.offset,
            timings=Timings(requested_ms=record.timestamp, consumed_ms=now_ms()),
        )

        try:
            request = decode_request(record.value)
        except DecodeError as exc:
            log.debug(
                "undecodable request",
                extra={"partition": record.partition, "offset": record.offset},
            )
            return Result(
                outcome=completed(
                    outcome,
                    status=Status.REJECTED,
                    reason=LocalReason.MALFORMED_REQUEST.value,
                    detail=str(exc),
                )
            )

        outcome = _with(
            outcome,
            request_id=request.id,
            topic=request.topic,
            push_type=request.push_type.value,
            token_digest=token_digest(request.device_token),
        )
        return await self._delivery.deliver(request, outcome)

    async def _publish(self, result: Result, record: ConsumerRecord) -> None:
        """Send the outcome and its companions; return once the broker has them all."""
        kafka = self._settings.kafka
        sends: list[tuple[str, str, msgspec.Struct]] = [
            (kafka.results_topic, result.outcome.request_id, result.outcome)
        ]
        if result.invalid_token is not None:
            token = result.invalid_token.device_token
            sends.append((kafka.invalid_tokens_topic, token, result.invalid_token))
        if result.outcome.reason == LocalReason.MALFORMED_REQUEST:
            value = record.value or b""
            dead = DeadLetter(
                error=result.outcome.detail or "",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=None
                if record.value is None
                else value[:DEAD_LETTER_MAX_VALUE_BYTES],
                headers=list(record.headers),
                value_bytes=len(value),
                truncated=len(value) > DEAD_LETTER_MAX_VALUE_BYTES,
            )
            sends.append((kafka.dlq_topic, result.outcome.request_id, dead))

        # Until the broker takes them, the offset stays uncommitted; keep trying, the
        # drain deadline bounds this on shutdown.
        while True:
            try:
                await self._send_all(sends)
                return
            except KafkaError as exc:
                log.warning(
                    "outcome not acknowledged, retrying",
                    extra={"error": type(exc).__name__, "offset": record.offset},
                )
                await asyncio.sleep(PUBLISH_RETRY_S)

    async def _send_all(self, sends: list[tuple[str, str, msgspec.Struct]]) -> None:
        """Send the records, each in a span whose context goes into its headers."""
        sendings: list[Sending] = []
        try:
            acks = []
            for topic, key, event in sends:
                # The invalid-token topic is keyed by the device token: not for a span.
                secret = topic == self._settings.kafka.invalid_tokens_topic
                sending = self._tracing.sending(topic, None if secret else key)
                sendings.append(sending)
                acks.append(
                    await self._producer.send(
                        topic,
                        encoder.encode(event),
                        key=key.encode(),
                        headers=sending.headers,
                    )
                )
            written = await asyncio.gather(*acks)
        except BaseException as exc:
            for sending in sendings:
                sending.failed(exc)
            raise

        for sending, metadata in zip(sendings, written):
            sending.acknowledged(metadata.partition, metadata.offset)

    # Offsets

    async def _commit_periodically(self) -> None:
        interval_s = self._settings.kafka.commit_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            await self._commit(self._offsets.uncommitted())

    async def _commit(self, positions: dict[TopicPartition, int]) -> None:
        if not positions:
            return
        try:
            await self._consumer.commit(positions)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance is under way; the revoke handler commits what is done.
            log.warning("commit failed", extra={"error": type(exc).__name__})
            return
        self._offsets.committed(positions)

    # Lag

    async def _report_lag_periodically(self) -> None:
        # On its own schedule: while the loop waits for a free slot, lag is what
        # operators most need to see.
        while True:
            await self._report_lag()
            await asyncio.sleep(LAG_INTERVAL_S)

    async def _report_lag(self) -> None:
        """Per assigned partition: records after the next one to be consumed."""
        for partition in list(self._consumer.assignment()):
            # Checked again for each: a rebalance may run while we await.
            if partition not in self._consumer.assignment():
                continue
            highwater = self._consumer.highwater(partition)
            if highwater is None:
                # Not fetched from yet: the end of the partition is not known.
                continue
            try:
                position = await self._consumer.position(partition)
            except IllegalStateError:
                continue
            metrics.consumer_lag(partition.partition, max(highwater - position, 0))

    # Rebalances (aiokafka calls these)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = set(assigned)
        self._assigned |= assigned
        log.info("partitions assigned", extra={"partitions": _names(assigned)})

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        revoked = set(revoked)
        self._assigned -= revoked
        await self._drain(revoked)
        await self._commit(self._offsets.uncommitted(revoked))
        self._offsets.forget(revoked)
        metrics.forget_partitions(p.partition for p in revoked)
        log.info("partitions revoked", extra={"partitions": _names(revoked)})

    async def _drain(self, partitions: Iterable[TopicPartition]) -> None:
        """Let the partitions' tasks finish; abandon those left at the deadline."""
        tasks = set().union(*(self._tasks.get(p, set()) for p in partitions))
        if not tasks:
            return

        _, late = await asyncio.wait(
            tasks, timeout=self._settings.delivery.drain_timeout_s
        )
        for task in late:
            task.cancel()
        if late:
            log.warning("abandoned unfinished requests", extra={"count": len(late)})
            await asyncio.wait(late)


def _with(outcome: Outcome, **changes: object) -> Outcome:
    return msgspec.structs.replace(outcome, **changes)


def _names(partitions: Iterable[TopicPartition]) -> list[str]:
    return sorted(f"{p.topic}/{p.partition}" for p in partitions)
