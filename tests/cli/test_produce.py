"""`apns-connector produce`: JSON lines into the requests topic of a real broker."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from connector import stack

LINES = [
    b'{"id": "p1", "device_token": "aa11", "topic": "com.example.demo"}',
    (
        b'{"id": "p2", "device_token": "bb22", "topic": "com.example.demo", '
        b'"alert": "hi", "field_of_a_newer_version": 1}'
    ),
    b'{"id": "p3", "device_token": "cc33", "topic": "com.example.demo"}',
]


async def records(
    run: stack.Run, count: int, timeout_s: float = 30
) -> list[ConsumerRecord]:
    """Exactly `count` records of the requests topic, read from its start."""
    consumer = AIOKafkaConsumer(
        run.requests, bootstrap_servers=run.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(found) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


async def requests_written(run: stack.Run) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=run.bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(run.requests, p)
            for p in range(stack.TOPICS["apns.requests"])
        ]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_produce_publishes_each_line_as_written_keyed_by_its_id(
    cli, run: stack.Run, tmp_path: Path
) -> None:
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b"\n".join([LINES[0], b"", LINES[1], LINES[2]]) + b"\n")

    ran = await cli("produce", "--config", run.config, "--progress", source)

    assert ran.code == 0
    assert ran.lines == [f"produced 3 requests to {run.requests}"]
    assert "3/3" in ran.stderr
    produced = await records(run, 3)
    assert sorted((r.key, r.value, r.headers) for r in produced) == [
        (b"p1", LINES[0], ()),
        (b"p2", LINES[1], ()),
        (b"p3", LINES[2], ()),
    ]


async def test_produce_reads_stdin_and_the_connector_delivers_it(
    cli, run: stack.Run
) -> None:
    ran = await cli(
        "produce",
        "--bootstrap",
        run.bootstrap,
        "--config",
        run.config,
        "--no-progress",
        stdin=b"\n".join(LINES),
    )
    assert (ran.code, ran.stdout, ran.stderr) == (
        0,
        f"produced 3 requests to {run.requests}\n",
        "",
    )

    connector = run.start_connector()
    try:
        read = await stack.read_outcomes(
            run.bootstrap, {"p1", "p2", "p3"}, topic=run.results, timeout_s=60
        )
    finally:
        assert connector.stop() == 0
    assert {rid: seen[0][0].status.value for rid, seen in read.outcomes.items()} == {
        "p1": "delivered",
        "p2": "delivered",
        "p3": "delivered",
    }


async def test_a_bad_line_stops_produce_before_anything_is_published(
    cli, run: stack.Run, tmp_path: Path
) -> None:
    source = tmp_path / "requests.jsonl"
    source.write_bytes(LINES[0] + b'\n{"id": "p2", "topic": "com.example.demo"}\n')

    ran = await cli("produce", "--config", run.config, source)

    assert (ran.code, ran.stdout) == (1, "")
    assert ran.stderr == (
        "apns-connector: line 2: invalid request: Object missing required field "
        "`device_token`; nothing was published\n"
    )
    await asyncio.sleep(0.5)
    assert await requests_written(run) == 0


async def test_produce_from_a_missing_file_is_a_usage_error(
    cli, run: stack.Run, tmp_path: Path
) -> None:
    ran = await cli("produce", "--config", run.config, tmp_path / "none.jsonl")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == f"apns-connector: FILE: {tmp_path}/none.jsonl does not exist\n"


async def test_produce_to_a_missing_topic_is_a_configuration_error(
    cli, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"t{secrets.token_hex(4)}.apns.requests"
    config = tmp_path / "connector.toml"
    config.write_text(f'[kafka]\nrequests_topic = "{topic}"\n')

    ran = await cli(
        "produce",
        "--config",
        config,
        "--bootstrap",
        kafka_bootstrap,
        "--no-progress",
        stdin=LINES[0],
    )

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: kafka topic {topic} does not exist on {kafka_bootstrap}\n"
    )


async def test_produce_with_two_files_prints_usage(cli) -> None:
    ran = await cli("produce", "a.jsonl", "b.jsonl")

    assert ran.code == 2
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector produce: error: unrecognized arguments: b.jsonl"
    )
