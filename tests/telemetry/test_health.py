"""`/readyz`: the consumer's state and whether APNs answers for every configured app."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from connector import settings, stack
from connector.errors import ConfigurationError, ConnectionFailed
from connector.kafka.topics import ensure_topics
from connector.service import Service
from connector.settings import AppSettings, TelemetrySettings
from connector.telemetry.health import KafkaState, Reachability, Readiness
from connector.telemetry.listener import Listener

APP = "com.example.demo"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def readyz(
    http: aiohttp.ClientSession, service: Service
) -> tuple[int, dict[str, Any]]:
    async with http.get(f"http://127.0.0.1:{service.listener.port}/readyz") as answer:
        return answer.status, await answer.json()


async def until(check: Any, timeout_s: float = 60) -> Any:
    """Calls `check` until it returns something true, or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_a_replica_beyond_the_partition_count_is_ready_and_waits(
    unstarted_run: stack.Run, in_process: Any, http: aiohttp.ClientSession
) -> None:
    run = unstarted_run
    topics = stack.topics(run.prefix)
    topics[run.requests] = 1
    await ensure_topics(run.bootstrap, topics)
    loaded = settings.load(run.config)

    async with in_process(loaded) as first, in_process(loaded) as second:

        async def both_in_the_group() -> list[tuple[int, dict[str, Any]]] | None:
            if first.listener.port is None or second.listener.port is None:
                return None
            reports = [await readyz(http, first), await readyz(http, second)]
            kafka = sorted(report["kafka"] for _, report in reports)
            return reports if kafka == ["assigned", "waiting for assignment"] else None

        reports = await until(both_in_the_group)
        assert reports is not None
        assert sorted(reports, key=lambda r: r[1]["kafka"]) == [
            (200, {"ready": True, "kafka": "assigned", "apns": {APP: "reachable"}}),
            (
                200,
                {
                    "ready": True,
                    "kafka": "waiting for assignment",
                    "apns": {APP: "reachable"},
                },
            ),
        ]


async def test_readyz_names_the_app_whose_apns_host_does_not_answer(
    run: stack.Run, in_process: Any, http: aiohttp.ClientSession
) -> None:
    loaded = settings.load(run.config)
    gone = msgspec.structs.replace(
        loaded.apps[0], bundle_id="com.example.gone", port=closed_port()
    )
    loaded = msgspec.structs.replace(loaded, apps=[*loaded.apps, gone])

    async with in_process(loaded) as service:

        async def assigned() -> tuple[int, dict[str, Any]] | None:
            if service.listener.port is None:
                return None
            status, report = await readyz(http, service)
            return (status, report) if report["kafka"] == "assigned" else None

        assert await until(assigned) == (
            503,
            {
                "ready": False,
                "kafka": "assigned",
                "apns": {
                    "com.example.demo": "reachable",
                    "com.example.gone": "unreachable: ConnectionRefusedError",
                },
            },
        )


async def test_deliveries_are_evidence_and_only_the_idle_are_probed() -> None:
    now = [1000.0]
    app = AppSettings(
        bundle_id=APP, key_file="k", key_id="k", team_id="t", host="127.0.0.1"
    )
    app = msgspec.structs.replace(app, port=closed_port())
    reachability = Reachability([app], ttl_s=30, clock=lambda: now[0])

    # An answer is evidence enough: the closed port is not tried.
    reachability.answered(APP)
    assert await reachability.check() == {APP: "reachable"}

    now[0] += 29
    reachability.unanswered(APP, ConnectionFailed("127.0.0.1: ConnectionResetError"))
    assert await reachability.check() == {APP: "no answer: ConnectionFailed"}

    # Idle past the evidence's age: the check opens a connection itself.
    now[0] += 30
    assert await reachability.check() == {APP: "unreachable: ConnectionRefusedError"}


@pytest.mark.parametrize(
    ("kafka", "ready"),
    [
        (KafkaState.STARTING, False),
        (KafkaState.WAITING, True),
        (KafkaState.ASSIGNED, True),
        (KafkaState.STOPPING, False),
    ],
)
async def test_only_a_consumer_in_its_group_is_ready(
    kafka: KafkaState, ready: bool
) -> None:
    report = await Readiness(lambda: kafka, Reachability([])).report()
    assert report.as_dict() == {"ready": ready, "kafka": kafka.value, "apns": {}}


async def test_a_port_already_taken_stops_the_connector_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listener = Listener(
            TelemetrySettings(http_host="127.0.0.1", http_port=port),
            Readiness(lambda: KafkaState.STARTING, Reachability([])),
            CollectorRegistry(),
        )
        with pytest.raises(ConfigurationError) as raised:
            await listener.start()
        await listener.stop()

    assert str(raised.value) == (
        f"telemetry.http_port: cannot listen on 127.0.0.1:{port}: "
        "Address already in use"
    )
