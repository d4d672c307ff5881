"""`/metrics`, `/livez` and `/readyz` of the connector run as its own process, after
a mixed run through the real broker and the simulator."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector import stack
from connector.telemetry.metrics import reason_label

APP = "com.example.demo"
QUICK_RETRIES = {
    "APNS_CONNECTOR_DELIVERY__MAX_ATTEMPTS": "2",
    "APNS_CONNECTOR_DELIVERY__RETRY_BACKOFF_S": "0.01",
}

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def outcome(status: str, reason: str, app: str = APP, push_type: str = "alert") -> Any:
    labels = {"app_topic": app, "push_type": push_type, "reason": reason}
    return ("apns_connector_outcomes_total", _labels(status=status, **labels))


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


async def test_metrics_count_a_mixed_run_exactly(
    telemetry_run: stack.Run,
    mixed: list[Any],
    kafka_io: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = telemetry_run
    # The connector's process inherits these.
    for name, value in QUICK_RETRIES.items():
        monkeypatch.setenv(name, value)
    await kafka_io.produce(run.requests, mixed)

    connector = run.start_connector()
    try:
        assert len(await kafka_io.read(run.results, len(mixed))) == len(mixed)
        base = f"http://127.0.0.1:{await listening_port(connector)}"
        async with aiohttp.ClientSession() as http:
            samples = await scrape_until_settled(http, base)
            async with http.get(f"{base}/livez") as live:
                assert (live.status, await live.json()) == (200, {"live": True})
            async with http.get(f"{base}/readyz") as ready:
                assert (ready.status, await ready.json()) == (
                    200,
                    {"ready": True, "kafka": "assigned", "apns": {APP: "reachable"}},
                )
    finally:
        exit_code = connector.stop()
    assert exit_code == 0

    assert samples == {
        outcome("delivered", ""): 3,
        outcome("rejected", "Unregistered"): 2,
        outcome("failed", "TooManyRequests"): 1,
        outcome("rejected", "BadDeviceToken"): 1,
        outcome("rejected", "MalformedRequest", app="", push_type=""): 1,
        (
            "apns_connector_retries_total",
            _labels(app_topic=APP, reason="TooManyRequests"),
        ): 1,
        # Three delivered, two Unregistered, twice TooManyRequests.
        (
            "apns_connector_apns_request_duration_seconds_count",
            _labels(app_topic=APP),
        ): 7,
        ("apns_connector_process_duration_seconds_count", ()): 8,
        ("apns_connector_in_flight", ()): 0,
        # Eight requests need no more than one HTTP/2 connection, and it one token.
        ("apns_connector_connections_open", _labels(app_topic=APP)): 1,
        ("apns_connector_token_mints_total", _labels(app_topic=APP)): 1,
        **{
            ("apns_connector_consumer_lag", _labels(partition=str(p))): 0
            for p in range(stack.TOPICS["apns.requests"])
        },
    }


async def listening_port(connector: stack.Process, timeout_s: float = 30) -> int:
    """The port the connector's log says its telemetry listener got."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in connector.log_path.read_text().splitlines():
            if '"telemetry listening"' in line:
                return int(json.loads(line)["port"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"no telemetry listener:\n{connector.log_tail()}")


async def scrape_until_settled(
    http: aiohttp.ClientSession, base: str, timeout_s: float = 30
) -> Samples:
    """The connector's own samples (no buckets or sums), once every partition's lag
    has been reported: it is measured once a second."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(f"{base}/metrics") as response:
            assert response.status == 200
            samples = parse(await response.text())
        lags = [n for n, _ in samples if n == "apns_connector_consumer_lag"]
        if len(lags) == stack.TOPICS["apns.requests"] or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


def parse(text: str) -> Samples:
    return {
        (sample.name, _labels(**sample.labels)): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("apns_connector_")
        and not sample.name.endswith(("_bucket", "_sum"))
    }


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        (None, ""),
        ("Unregistered", "Unregistered"),
        ("MalformedRequest", "MalformedRequest"),
        ("ConnectionFailed", "ConnectionFailed"),
        ("SomethingAppleAddsNextYear", "other"),
        ("<html>502 Bad Gateway</html>", "other"),
    ],
)
def test_a_reason_label_takes_only_known_values(reason: str | None, label: str) -> None:
    assert reason_label(reason) == label
