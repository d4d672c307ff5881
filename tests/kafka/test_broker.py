"""The pinned Kafka broker against aiokafka: everything the connector relies on."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import NotEnoughReplicasError
from aiokafka.structs import ConsumerRecord

from connector.kafka.__main__ import running_pid
from connector.kafka.broker import LocalBroker
from connector.kafka.topics import ensure_topics, set_topic_config


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


def idempotent_producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
    )


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def read(
    consumer: AIOKafkaConsumer, count: int, timeout_s: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(timeout_s):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=count)
            for batch in batches.values():
                records.extend(batch)
    return records


async def test_consumer_resumes_right_after_its_committed_offset(
    kafka_bootstrap: str,
) -> None:
    topic, group = unique("resume"), unique("group")
    partition = TopicPartition(topic, 0)
    await ensure_topics(kafka_bootstrap, {topic: 1})
    # A second call finds the topic there and is fine with it.
    await ensure_topics(kafka_bootstrap, {topic: 1})

    producer = idempotent_producer(kafka_bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send_and_wait(topic, f"v{n}".encode(), key=f"k{n}".encode())
            for n in range(10)
        ]
    finally:
        await producer.stop()
    assert [metadata.offset for metadata in sent] == list(range(10))

    first = group_consumer(kafka_bootstrap, topic, group)
    await first.start()
    try:
        seen = await read(first, 4)
        assert [record.value for record in seen[:4]] == [b"v0", b"v1", b"v2", b"v3"]
        # Committing 4 means "v4 is the next record this group reads".
        await first.commit({partition: 4})
        assert await first.committed(partition) == 4
    finally:
        await first.stop()

    second = group_consumer(kafka_bootstrap, topic, group)
    await second.start()
    try:
        resumed = await read(second, 6)
        assert second.assignment() == {partition}
    finally:
        await second.stop()
    assert [record.offset for record in resumed] == [4, 5, 6, 7, 8, 9]
    assert [record.key for record in resumed] == [
        b"k4",
        b"k5",
        b"k6",
        b"k7",
        b"k8",
        b"k9",
    ]
    assert [record.value for record in resumed] == [
        b"v4",
        b"v5",
        b"v6",
        b"v7",
        b"v8",
        b"v9",
    ]


async def test_ensure_topics_creates_every_partition(kafka_bootstrap: str) -> None:
    topics = {unique("three"): 3, unique("one"): 1}
    await ensure_topics(kafka_bootstrap, topics)

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    assert {topic["topic"]: len(topic["partitions"]) for topic in described} == topics


async def test_set_topic_config_keeps_the_other_overrides(
    kafka_bootstrap: str,
) -> None:
    topic = unique("configs")
    await ensure_topics(kafka_bootstrap, {topic: 1})
    await set_topic_config(kafka_bootstrap, topic, {"retention.ms": "3600000"})
    await set_topic_config(kafka_bootstrap, topic, {"min.insync.replicas": "2"})

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        (response,) = await admin.describe_configs([resource])
    finally:
        await admin.close()
    (described,) = response.to_object()["resources"]
    overrides = {
        entry["config_names"]: entry["config_value"]
        for entry in described["config_entries"]
        if entry["config_source"] == 1
    }
    assert overrides == {"retention.ms": "3600000", "min.insync.replicas": "2"}


async def test_min_insync_replicas_alone_does_not_block_one_replica(
    kafka_bootstrap: str,
) -> None:
    # Kafka caps the effective min.insync.replicas at the replica count, so on a
    # topic of replication 1 the setting changes nothing. Should a Kafka release
    # drop the cap, this test says so.
    topic = unique("capped")
    await ensure_topics(kafka_bootstrap, {topic: 1})
    await set_topic_config(kafka_bootstrap, topic, {"min.insync.replicas": "2"})

    producer = idempotent_producer(kafka_bootstrap)
    await producer.start()
    try:
        metadata = await asyncio.wait_for(producer.send_and_wait(topic, b"x"), 10)
    finally:
        await producer.stop()
    assert metadata.offset == 0


async def test_min_insync_replicas_blocks_writes_until_set_back(
    kafka_broker: LocalBroker | None,
    kafka_bootstrap: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if kafka_broker is None:
        pytest.skip("a departed broker can only be added to the local broker")
    await asyncio.to_thread(kafka_broker.add_departed_broker)
    # Replication 2 puts a replica on the departed broker, never in sync.
    topic = unique("blocked")
    await ensure_topics(kafka_bootstrap, {topic: 1}, replication=2)
    await set_topic_config(kafka_bootstrap, topic, {"min.insync.replicas": "2"})

    producer = idempotent_producer(kafka_bootstrap)
    await producer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="aiokafka.producer.sender"):
            sending = asyncio.ensure_future(producer.send_and_wait(topic, b"late"))
            await asyncio.sleep(2)
            # An idempotent producer never expires a batch: it retries, it does not fail.
            assert not sending.done()
            assert NotEnoughReplicasError.__name__ in caplog.text

            await set_topic_config(kafka_bootstrap, topic, {"min.insync.replicas": "1"})
            metadata = await asyncio.wait_for(sending, 10)
    finally:
        await producer.stop()
    assert metadata.offset == 0

    # The retries wrote the record once.
    consumer = group_consumer(kafka_bootstrap, topic, unique("group"))
    await consumer.start()
    try:
        records = await read(consumer, 1)
        end = await consumer.end_offsets([TopicPartition(topic, 0)])
    finally:
        await consumer.stop()
    assert [(record.offset, record.value) for record in records] == [(0, b"late")]
    assert end == {TopicPartition(topic, 0): 1}


def broker_command(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "connector.kafka.broker", *args]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=180
    )


async def partition_counts(bootstrap: str) -> dict[str, int]:
    """Every topic of the broker but Kafka's own, with its number of partitions."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics()
        return {
            topic["topic"]: len(topic["partitions"])
            for topic in described
            if not topic["topic"].startswith("__")
        }
    finally:
        await admin.close()


def test_command_line_starts_a_detached_broker_and_stops_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "kafka"
    try:
        started = broker_command("start", "--state-dir", str(state_dir))
        assert started.returncode == 0, started.stderr
        assert re.fullmatch(r"127\.0\.0\.1:\d+\n", started.stdout)
        bootstrap = started.stdout.strip()
        assert (state_dir / "bootstrap").read_text() == f"{bootstrap}\n"
        pid = running_pid(state_dir)
        assert pid == int((state_dir / "pid").read_text())
        assert asyncio.run(partition_counts(bootstrap)) == {
            "apns.requests": 4,
            "apns.results": 4,
            "apns.invalid-tokens": 1,
            "apns.requests.dlq": 1,
        }

        # The broker outlived the command, and a second start finds it.
        again = broker_command("start", "--state-dir", str(state_dir))
        assert (again.returncode, again.stdout) == (0, f"{bootstrap}\n")
        assert running_pid(state_dir) == pid
    finally:
        stopped = broker_command("stop", "--state-dir", str(state_dir))

    assert stopped.returncode == 0, stopped.stderr
    assert running_pid(state_dir) is None
    assert not (state_dir / "pid").exists()
    assert not (state_dir / "bootstrap").exists()
    # Stopping what is not running is no error.
    assert broker_command("stop", "--state-dir", str(state_dir)).returncode == 0
