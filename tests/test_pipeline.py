"""The main job end to end: a real broker, the simulator over TLS HTTP/2, and the
connector as its own process."""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from pathlib import Path

import msgspec
import pytest

from connector import stack
from connector.events import DeadLetter, InvalidToken, NotificationRequest, encoder
from connector.kafka.broker import LocalBroker
from connector.kafka.topics import ensure_topics, set_topic_config
from connector.simulator.server import Simulator

BUNDLE_ID = "com.example.demo"
UNREGISTERED_AT_MS = 1_700_000_000_123


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
    run: stack.Run, simulator: Simulator
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
    # Every outcome, a local rejection's too, says when it was consumed and completed.
    assert [
        rid
        for rid, o in outcomes.items()
        if not 0 < o["timings"]["consumed_ms"] <= o["timings"]["completed_ms"]
    ] == []
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


async def test_sigkill_in_the_middle_loses_no_request(run: stack.Run) -> None:
    total = 5000
    records = [(f"r{n}", request(f"r{n}", secrets.token_hex(32))) for n in range(total)]
    await run.produce(records)

    first = run.start_connector()
    deadline = time.monotonic() + 120
    while await run.outcomes_written() < total // 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    first.kill()
    killed_after = await run.outcomes_written()
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
    unstarted_run: stack.Run, simulator: Simulator, kafka_broker: LocalBroker | None
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
    assert await run.outcomes_written() == 0
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
    run: stack.Run, tmp_path: Path
) -> None:
    config = run.config.read_text()
    key_line = next(line for line in config.splitlines() if line.startswith("key_file"))
    run.config.write_text(config.replace(key_line, f'key_file = "{tmp_path}/none.p8"'))

    connector = run.start_connector()
    assert connector.popen.wait(30) == 2
    assert connector.log_tail(1) == (
        f"apns-connector: apps (com.example.demo).key_file {tmp_path}/none.p8 "
        "does not exist"
    )
