"""The main job end to end: a real broker, the simulator over TLS HTTP/2, and the
connector as its own process."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from connector import stack
from connector.events import DeadLetter, InvalidToken, NotificationRequest, encoder
from connector.kafka.broker import LocalBroker
from connector.kafka.topics import ensure_topics, set_topic_config
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
UNREGISTERED_AT_MS = 1_700_000_000_123


@pytest.fixture(scope="session")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> stack.Credentials:
    return stack.Credentials(tmp_path_factory.mktemp("credentials"))


@pytest.fixture
async def simulator(credentials: stack.Credentials) -> AsyncIterator[Simulator]:
    async with Simulator(
        tls=credentials.tls, signing_keys=credentials.signing_keys
    ) as running:
        yield running


class Run:
    """One test's topics, group and connector settings on the shared broker."""

    def __init__(
        self, bootstrap: str, directory: Path, credentials: stack.Credentials, port: int
    ) -> None:
        self.bootstrap = bootstrap
        self.directory = directory
        self.prefix = f"t{secrets.token_hex(4)}."
        self.group = f"group-{self.prefix}"
        self.requests = self.prefix + "apns.requests"
        self.results = self.prefix + "apns.results"
        self.config = stack.write_config(
            directory / "connector.toml",
            bootstrap=bootstrap,
            group_id=self.group,
            credentials=credentials,
            simulator_port=port,
            bundle_id=BUNDLE_ID,
            prefix=self.prefix,
        )
        self.started = 0

    def start_connector(self) -> stack.Process:
        self.started += 1
        return stack.start_connector(
            self.config, self.directory, name=f"connector-{self.started}"
        )

    async def produce(self, records: list[tuple[str, bytes]]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            futures = [
                await producer.send(self.requests, value, key=key.encode())
                for key, value in records
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    async def read(self, topic: str, count: int, timeout_s: float = 60) -> list[bytes]:
        """Exactly `count` record values of a topic, read from its start."""
        consumer = AIOKafkaConsumer(
            self.prefix + topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            deadline = time.monotonic() + timeout_s
            while len(values) < count and time.monotonic() < deadline:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    values.extend(record.value for record in records)
        finally:
            await consumer.stop()
        return values

    async def committed(self) -> dict[int, int]:
        """The group's committed offset per requests partition."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(self.group)
        finally:
            await admin.close()
        return {
            tp.partition: meta.offset
            for tp, meta in offsets.items()
            if tp.topic == self.requests
        }


@pytest.fixture
def unstarted_run(
    kafka_bootstrap: str,
    tmp_path: Path,
    credentials: stack.Credentials,
    simulator: Simulator,
) -> Run:
    """A run whose topics the test creates itself."""
    return Run(kafka_bootstrap, tmp_path, credentials, simulator.port)


@pytest.fixture
async def run(unstarted_run: Run) -> Run:
    await ensure_topics(unstarted_run.bootstrap, stack.topics(unstarted_run.prefix))
    return unstarted_run


def request(request_id: str, token: str, **fields: object) -> bytes:
    return encoder.encode(
        NotificationRequest(
            id=request_id,
            device_token=token,
            topic=fields.pop("topic", BUNDLE_ID),  # type: ignore[arg-type]
            aps={"alert": "hi"},
            **fields,  # type: ignore[arg-type]
        )
    )


async def test_every_request_gets_its_one_outcome(
    run: Run, simulator: Simulator
) -> None:
    good, dead = secrets.token_hex(32), secrets.token_hex(32)
    simulator.register_unregistered(dead, UNREGISTERED_AT_MS)
    records = [
        ("ok", request("ok", good)),
        ("dead", request("dead", dead)),
        ("bad-token", request("bad-token", "zz-not-hex")),
        ("other-app", request("other-app", good, topic="com.example.other")),
        (
            "too-big",
            encoder.encode(
                NotificationRequest(
                    id="too-big",
                    device_token=good,
                    topic=BUNDLE_ID,
                    aps={"alert": "x" * 5000},
                )
            ),
        ),
        ("garbage", b"\xff{not json"),
        ("no-token", b'{"id": "no-token", "topic": "com.example.demo"}'),
        (
            "push-type",
            (
                b'{"id": "push-type", "device_token": "ab", '
                b'"topic": "com.example.demo", "push_type": "fax"}'
            ),
        ),
    ]
    await run.produce(records)
    connector = run.start_connector()

    values = await run.read("apns.results", len(records))
    outcomes = {o["request_id"]: o for o in map(msgspec.json.decode, values)}
    assert {
        rid: (o["status"], o["reason"], o["http_status"]) for rid, o in outcomes.items()
    } == {
        "ok": ("delivered", None, 200),
        "dead": ("rejected", "Unregistered", 410),
        "bad-token": ("rejected", "BadDeviceToken", None),
        "other-app": ("rejected", "UnknownTopic", None),
        "too-big": ("rejected", "PayloadTooLarge", None),
        "garbage": ("rejected", "MalformedRequest", None),
        "no-token": ("rejected", "MalformedRequest", None),
        "push-type": ("rejected", "MalformedRequest", None),
    }
    assert outcomes["dead"]["invalidated_at_ms"] == UNREGISTERED_AT_MS
    assert outcomes["no-token"]["detail"] == (
        "invalid request: Object missing required field `device_token`"
    )
    assert outcomes["push-type"]["detail"] == (
        "invalid request: Invalid enum value 'fax' - at `$.push_type`"
    )
    assert outcomes["other-app"]["detail"] == (
        "topic: no app is configured for 'com.example.other'"
    )
    assert outcomes["ok"]["attempts"] == 1
    assert good not in b"".join(values).decode()

    invalid = [
        msgspec.json.decode(v, type=InvalidToken)
        for v in await run.read("apns.invalid-tokens", 2)
    ]
    assert sorted(
        (e.request_id, e.device_token, e.reason, e.found_locally, e.invalidated_at_ms)
        for e in invalid
    ) == [
        ("bad-token", "zz-not-hex", "BadDeviceToken", True, None),
        ("dead", dead, "Unregistered", False, UNREGISTERED_AT_MS),
    ]

    dead_letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await run.read("apns.requests.dlq", 3)
    ]
    assert sorted((d.key, d.value) for d in dead_letters) == sorted(
        (key.encode(), value)
        for key, value in records
        if key in ("garbage", "no-token", "push-type")
    )

    # Only the two requests that passed every local check reached the simulator.
    assert sorted(r.path for r in simulator.received) == sorted(
        [f"/3/device/{good}", f"/3/device/{dead}"]
    )

    connector.popen.send_signal(signal.SIGTERM)
    assert connector.popen.wait(30) == 0
    assert sum((await run.committed()).values()) == len(records)


async def outcome_count(run: Run) -> int:
    """How many outcomes the results topic holds now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=run.bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(run.results, p) for p in range(4)]
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(ends.values())


async def test_sigkill_in_the_middle_loses_no_request(run: Run) -> None:
    total = 5000
    records = [(f"r{n}", request(f"r{n}", secrets.token_hex(32))) for n in range(total)]
    await run.produce(records)

    first = run.start_connector()
    deadline = time.monotonic() + 120
    while await outcome_count(run) < total // 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    first.kill()
    killed_after = await outcome_count(run)
    assert total // 3 <= killed_after < total

    second = run.start_connector()
    read = await stack.read_outcomes(
        run.bootstrap, {key for key, _ in records}, topic=run.results, timeout_s=180
    )
    second.popen.send_signal(signal.SIGTERM)
    assert second.popen.wait(30) == 0

    missing = read.missing(key for key, _ in records)
    print(f"killed after {killed_after} outcomes; duplicates={read.duplicates}")
    assert missing == 0
    assert {o.status.value for seen in read.outcomes.values() for o, _ in seen} == {
        "delivered"
    }
    assert sum((await run.committed()).values()) == total


async def test_offset_waits_for_an_unwritable_results_topic(
    unstarted_run: Run, simulator: Simulator, kafka_broker: LocalBroker | None
) -> None:
    if kafka_broker is None:
        pytest.skip("needs the local broker: it registers a second, departed broker")

    # The results topic gets a replica on a broker that is gone: with acks=all and
    # two in-sync replicas required, every write fails until the setting is put back.
    run = unstarted_run
    await asyncio.to_thread(kafka_broker.add_departed_broker)
    topics = stack.topics(run.prefix)
    del topics[run.results]
    await ensure_topics(run.bootstrap, topics)
    await ensure_topics(run.bootstrap, {run.results: 4}, replication=2)
    await set_topic_config(run.bootstrap, run.results, {"min.insync.replicas": "2"})
    records = [(f"w{n}", request(f"w{n}", secrets.token_hex(32))) for n in range(10)]
    await run.produce(records)

    first = run.start_connector()
    deadline = time.monotonic() + 60
    while len(simulator.received) < 10 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(simulator.received) == 10

    # Several commit intervals pass; nothing may be committed.
    await asyncio.sleep(2)
    assert await run.committed() == {}
    assert await outcome_count(run) == 0
    first.kill()

    await set_topic_config(run.bootstrap, run.results, {"min.insync.replicas": "1"})
    second = run.start_connector()
    read = await stack.read_outcomes(
        run.bootstrap, {key for key, _ in records}, topic=run.results, timeout_s=60
    )
    second.popen.send_signal(signal.SIGTERM)
    assert second.popen.wait(30) == 0

    assert read.missing(key for key, _ in records) == 0
    assert read.duplicates == 0
    # Processed again: each request reached APNs once per connector run.
    assert len(simulator.received) == 20
    assert sum((await run.committed()).values()) == 10


async def test_missing_key_file_stops_the_connector_at_start(
    run: Run, tmp_path: Path
) -> None:
    config = run.config.read_text()
    key_line = next(line for line in config.splitlines() if line.startswith("key_file"))
    run.config.write_text(config.replace(key_line, f'key_file = "{tmp_path}/none.p8"'))

    connector = run.start_connector()
    assert connector.popen.wait(30) == 2
    assert connector.log_tail(1) == (
        f"apns-connector: key file {tmp_path}/none.p8 does not exist"
    )
