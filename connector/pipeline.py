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
from collections.abc import Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from connector.apns.reasons import LocalReason
from connector.delivery import Delivery, Result, now_ms
from connector.errors import DecodeError
from connector.events import (
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

log = logging.getLogger(__name__)

PUBLISH_RETRY_S = 1.0


class Pipeline(ConsumerRebalanceListener):  # type: ignore[misc]
    """Consumes requests, delivers them, publishes outcomes, commits offsets."""

    def __init__(
        self,
        settings: Settings,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        delivery: Delivery,
    ) -> None:
        self._settings = settings
        self._consumer = consumer
        self._producer = producer
        self._delivery = delivery
        self._offsets = OffsetTracker()
        self._slots = asyncio.Semaphore(settings.delivery.max_in_flight)
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._assigned: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self.processed = 0

    # The consumer loop

    async def run(self) -> None:
        """Consume until `stop()`, then drain in-flight work and commit."""
        committer = asyncio.create_task(self._commit_periodically())
        try:
            while not self._stopping.is_set():
                batches = await self._consumer.getmany(timeout_ms=200)
                for partition, records in batches.items():
                    await self._start_all(partition, records)
        finally:
            committer.cancel()
            await self._drain(list(self._tasks))
            await self._commit(self._offsets.uncommitted())

    def stop(self) -> None:
        self._stopping.set()

    async def _start_all(
        self, partition: TopicPartition, records: Iterable[ConsumerRecord]
    ) -> None:
        for record in records:
            # Waiting for a slot is the back-pressure: no fetching meanwhile.
            await self._slots.acquire()

            # The partition may have been revoked while we waited; its new owner
            # will read this record again.
            if partition not in self._assigned or self._stopping.is_set():
                self._slots.release()
                return

            self._offsets.start(partition, record.offset)
            task = asyncio.create_task(self._process(partition, record))
            self._tasks.setdefault(partition, set()).add(task)
            task.add_done_callback(self._tasks[partition].discard)

    # One record

    async def _process(self, partition: TopicPartition, record: ConsumerRecord) -> None:
        try:
            result = await self._result_of(record)
            await self._publish(result, record)
            self._offsets.finish(partition, record.offset)
            self.processed += 1
        except Exception:
            # A bug, not an answer: the offset stays uncommitted, so the request is
            # read again after a restart instead of being lost.
            log.exception(
                "request failed unexpectedly",
                extra={"partition": record.partition, "offset": record.offset},
            )
        finally:
            self._slots.release()

    async def _result_of(self, record: ConsumerRecord) -> Result:
        key = record.key.decode("utf-8", "replace") if record.key else None
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
            log.info(
                "undecodable request",
                extra={"partition": record.partition, "offset": record.offset},
            )
            return Result(
                outcome=_with(
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
            dead = DeadLetter(
                error=result.outcome.detail or "",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value,
                headers=list(record.headers),
            )
            sends.append((kafka.dlq_topic, result.outcome.request_id, dead))

        # Until the broker takes them, the offset stays uncommitted; keep trying, the
        # drain deadline bounds this on shutdown.
        while True:
            try:
                acks = [
                    await self._producer.send(
                        topic, encoder.encode(event), key=key.encode()
                    )
                    for topic, key, event in sends
                ]
                await asyncio.gather(*acks)
                return
            except KafkaError as exc:
                log.warning(
                    "outcome not acknowledged, retrying",
                    extra={"error": type(exc).__name__, "offset": record.offset},
                )
                await asyncio.sleep(PUBLISH_RETRY_S)

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
