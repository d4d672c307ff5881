"""`apns-connector tail`: outcomes and invalid tokens, read from a real broker."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from pathlib import Path

from aiokafka import AIOKafkaProducer

from connector import stack
from connector.cli.display import timestamp
from connector.events import InvalidToken, Outcome, Status, Timings, encoder
from connector.redaction import token_digest

TOKEN = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"
DELIVERED = Outcome(
    request_id="t1",
    status=Status.DELIVERED,
    http_status=200,
    apns_id="64343776-1eee-570b-8402-12d878971528",
    attempts=1,
    topic="com.example.demo",
    push_type="alert",
    token_digest=token_digest(TOKEN),
    timings=Timings(requested_ms=1, consumed_ms=2, completed_ms=3),
)
GONE = Outcome(
    request_id="t2",
    status=Status.REJECTED,
    reason="Unregistered",
    http_status=410,
    invalidated_at_ms=1_700_000_000_123,
    attempts=1,
    topic="com.example.demo",
    token_digest=token_digest(TOKEN),
)
INVALID = InvalidToken(
    device_token=TOKEN,
    topic="com.example.demo",
    reason="Unregistered",
    invalidated_at_ms=1_700_000_000_123,
    request_id="t2",
)
AT_MS = 1_767_225_600_000


async def publish(
    run: stack.Run, *events: Outcome | InvalidToken, at_ms: int = AT_MS
) -> None:
    """The events on the run's topics, written at `at_ms`, `at_ms + 1`, ..."""
    producer = AIOKafkaProducer(bootstrap_servers=run.bootstrap, acks="all")
    await producer.start()
    try:
        for number, event in enumerate(events):
            if isinstance(event, Outcome):
                topic, key = run.results, event.request_id
            else:
                topic, key = run.prefix + "apns.invalid-tokens", event.device_token
            await producer.send_and_wait(
                topic,
                encoder.encode(event),
                key=key.encode(),
                timestamp_ms=at_ms + number,
            )
    finally:
        await producer.stop()


def person_lines() -> list[str]:
    return [
        (
            f"{timestamp(AT_MS)} outcome t1: delivered (200) "
            "apns-id=64343776-1eee-570b-8402-12d878971528 topic=com.example.demo "
            f"token={token_digest(TOKEN)} attempts=1"
        ),
        (
            f"{timestamp(AT_MS + 1)} outcome t2: rejected Unregistered (410) "
            "invalid-since=2023-11-14T22:13:20.123Z topic=com.example.demo "
            f"token={token_digest(TOKEN)} attempts=1"
        ),
        (
            f"{timestamp(AT_MS + 2)} invalid-token token {token_digest(TOKEN)}: "
            "Unregistered invalid-since=2023-11-14T22:13:20.123Z topic=com.example.demo "
            "request=t2"
        ),
    ]


async def test_tail_from_the_beginning_prints_each_record_for_a_person(
    cli, run: stack.Run
) -> None:
    await publish(run, DELIVERED, GONE, INVALID)

    ran = await cli("tail", "--config", run.config, "--from-beginning", "--count", "3")

    assert ran.code == 0
    assert ran.lines == person_lines()
    assert TOKEN not in ran.stdout
    assert ran.stderr == (
        f"tail: following {run.results} and {run.prefix}apns.invalid-tokens "
        f"on {run.bootstrap}\n"
    )


async def test_tail_json_passes_the_events_on_as_published(cli, run: stack.Run) -> None:
    await publish(run, DELIVERED, INVALID)

    ran = await cli(
        "tail", "--config", run.config, "--from-beginning", "--count", "2", "--json"
    )

    assert ran.code == 0
    lines = [json.loads(line) for line in ran.lines]
    assert [(line["topic"], line["timestamp_ms"]) for line in lines] == [
        (run.results, AT_MS),
        (run.prefix + "apns.invalid-tokens", AT_MS + 1),
    ]
    assert lines[0]["event"] == json.loads(encoder.encode(DELIVERED))
    # The invalid-token event is for acting on the token: it is printed whole.
    assert lines[1]["event"] == json.loads(encoder.encode(INVALID))
    assert lines[1]["event"]["device_token"] == TOKEN


async def test_tail_follows_new_records_until_sigint(
    cli_process, run: stack.Run
) -> None:
    await publish(run, DELIVERED)
    process = await cli_process("tail", "--config", run.config)

    async with asyncio.timeout(30):
        following = await process.stderr.readline()
    assert following.decode().startswith("tail: following ")

    # Only what is published from now on is printed.
    await publish(run, GONE, INVALID, at_ms=AT_MS + 1)
    async with asyncio.timeout(30):
        printed = [(await process.stdout.readline()).decode() for _ in range(2)]
    process.send_signal(signal.SIGINT)
    async with asyncio.timeout(30):
        rest, errors = await process.communicate()

    assert process.returncode == 0
    assert sorted(printed) == sorted(line + "\n" for line in person_lines()[1:])
    assert (rest, errors) == (b"", b"")


async def test_tail_with_a_missing_settings_file_is_a_usage_error(
    cli, tmp_path: Path
) -> None:
    ran = await cli("tail", "--config", tmp_path / "none.toml")

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: settings file {tmp_path}/none.toml does not exist\n"
    )


async def test_tail_of_missing_topics_is_a_configuration_error(
    cli, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"t{secrets.token_hex(4)}.apns.results"
    config = tmp_path / "connector.toml"
    config.write_text(f'[kafka]\nresults_topic = "{topic}"\n')

    ran = await cli("tail", "--config", config, "--bootstrap", kafka_bootstrap)

    assert (ran.code, ran.stdout) == (2, "")
    assert ran.stderr == (
        f"apns-connector: kafka topic {topic} does not exist on {kafka_bootstrap}\n"
    )


async def test_tail_with_a_bad_count_prints_usage(cli) -> None:
    ran = await cli("tail", "--count", "none")

    assert ran.code == 2
    assert ran.stderr.splitlines()[-1] == (
        "apns-connector tail: error: argument --count: not a whole number: 'none'"
    )
