"""`make demo`: the main job end to end on a local broker and the simulator.

Starts Kafka (unless KAFKA_BOOTSTRAP names one), the simulator and the connector;
produces 1,000 requests of four kinds; waits until each has an outcome; prints what
happened and a last line the Makefile and the tests read.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from aiokafka import AIOKafkaProducer

from connector import stack
from connector.events import NotificationRequest, encoder
from connector.kafka.broker import LocalBroker, external_bootstrap
from connector.kafka.topics import ensure_topics

BUNDLE_ID = "com.example.demo"

# Of every 100 requests: 90 valid, 5 to tokens the simulator knows as unregistered,
# 3 with malformed tokens, 2 that are not JSON at all.
MIX = (("valid", 90), ("unregistered", 5), ("malformed-token", 3), ("undecodable", 2))
EXPECTED = {
    "valid": ("delivered", None),
    "unregistered": ("rejected", "Unregistered"),
    "malformed-token": ("rejected", "BadDeviceToken"),
    "undecodable": ("rejected", "MalformedRequest"),
}


def plan(count: int) -> list[tuple[str, str, str]]:
    """(request id, kind, device token) for `count` requests in the demo's mix."""
    kinds = [kind for kind, share in MIX for _ in range(share)]
    requests = []
    for number in range(count):
        kind = kinds[number % len(kinds)]
        token = "zz-not-hex" if kind == "malformed-token" else secrets.token_hex(32)
        requests.append((f"demo-{number:05d}", kind, token))
    return requests


async def produce(
    bootstrap: str, requests: list[tuple[str, str, str]]
) -> dict[str, int]:
    """Append the requests; returns each one's append time in ms."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = {}
        for request_id, kind, token in requests:
            if kind == "undecodable":
                value = b"\xff{not json"
            else:
                value = encoder.encode(
                    NotificationRequest(
                        id=request_id,
                        device_token=token,
                        topic=BUNDLE_ID,
                        aps={"alert": {"title": "Demo", "body": f"Hello {request_id}"}},
                    )
                )
            futures[request_id] = await producer.send(
                "apns.requests", value, key=request_id.encode()
            )
        return {rid: (await future).timestamp for rid, future in futures.items()}
    finally:
        await producer.stop()


def report(
    requests: list[tuple[str, str, str]],
    appended_ms: dict[str, int],
    read: stack.ReadBack,
) -> tuple[str, bool]:
    """The table and the last line; whether every category got what it should."""
    by_result: Counter[tuple[str, str]] = Counter()
    wrong = 0
    latencies = []
    for request_id, kind, _ in requests:
        seen = read.outcomes.get(request_id)
        if not seen:
            continue
        outcome, outcome_ms = seen[0]
        by_result[(outcome.status.value, outcome.reason or "-")] += 1
        if (outcome.status.value, outcome.reason) != EXPECTED[kind]:
            wrong += 1
        latencies.append(outcome_ms - appended_ms[request_id])

    missing = read.missing(rid for rid, _, _ in requests)
    outcomes = [seen for seen in read.outcomes.values()]
    first_consumed_ms = min(o.timings.consumed_ms for seen in outcomes for o, _ in seen)
    last_outcome_ms = max(ts for seen in outcomes for _, ts in seen)
    elapsed_s = max(last_outcome_ms - first_consumed_ms, 1) / 1000
    rate = round(len(read.outcomes) / elapsed_s)
    p50 = statistics.median(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98]

    lines = [f"{'status':<10} {'reason':<18} {'count':>6}"]
    for (status, reason), count in sorted(by_result.items()):
        lines.append(f"{status:<10} {reason:<18} {count:>6}")
    lines.append(f"rate {rate}/s, p50 {p50:.0f} ms, p99 {p99:.0f} ms, wrong {wrong}")
    lines.append(
        f"demo: requests={len(requests)} outcomes={len(read.outcomes)} "
        f"missing={missing} duplicates={read.duplicates} rate={rate}/s "
        f"p99_ms={p99:.0f}"
    )
    return "\n".join(lines), missing == 0 and wrong == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connector.demo")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the state folder")
    args = parser.parse_args(argv)

    state = Path(tempfile.mkdtemp(prefix="apns-demo-"))
    with ExitStack() as cleanup:
        if not args.keep:
            cleanup.callback(shutil.rmtree, state, True)

        bootstrap = external_bootstrap()
        if bootstrap is None:
            print("starting Kafka ...", flush=True)
            broker = cleanup.enter_context(LocalBroker(state / "kafka"))
            bootstrap = broker.bootstrap
        asyncio.run(ensure_topics(bootstrap, stack.TOPICS))

        requests = plan(args.requests)
        unregistered = [t for _, kind, t in requests if kind == "unregistered"]
        credentials = stack.Credentials(state / "credentials")
        simulator, port = stack.start_simulator(
            credentials, state, unregistered=unregistered
        )
        cleanup.callback(simulator.stop)

        group_id = f"demo-{secrets.token_hex(4)}"
        config = stack.write_config(
            state / "connector.toml",
            bootstrap=bootstrap,
            group_id=group_id,
            credentials=credentials,
            simulator_port=port,
            bundle_id=BUNDLE_ID,
        )
        connector = stack.start_connector(config, state)
        cleanup.callback(connector.stop)
        asyncio.run(stack.wait_for_group(bootstrap, group_id))
        print(f"producing {len(requests)} requests ...", flush=True)
        started = time.monotonic()
        appended_ms = asyncio.run(produce(bootstrap, requests))
        expected = {request_id for request_id, _, _ in requests}
        read = asyncio.run(stack.read_outcomes(bootstrap, expected, timeout_s=180))
        print(f"read back in {time.monotonic() - started:.1f} s", flush=True)

        exit_code = connector.stop()
        if exit_code != 0:
            print(f"connector exited {exit_code}:\n{connector.log_tail()}")
        table, as_expected = report(requests, appended_ms, read)
        print(table)
    return 0 if as_expected and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
