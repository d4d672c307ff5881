"""The connector's part of the run: Kafka to Kafka at full speed, then paced.

All N requests are appended before the connector starts; its rate is N over the time
from the first request consumed to the last outcome written, its CPU and memory are
read from /proc while it runs. Then requests are appended at fractions of that rate
and each one's latency is taken from its scheduled send time to its outcome's append.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import report
from bench.report import progress
from bench.senders import BUNDLE_ID, aps, device_token
from connector import stack
from connector.events import NotificationRequest, encoder
from connector.kafka.topics import ensure_topics, set_topic_config

FRACTIONS = (0.25, 0.5, 0.75, 0.9)
# A run that writes no outcome for this long is stuck; it fails instead of waiting.
STALL_S = 120


def cpu_and_rss(pid: int) -> tuple[float, float, float]:
    """(CPU seconds, RSS MB, peak RSS MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks
    status = Path(f"/proc/{pid}/status").read_text()
    rss = float(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    hwm = float(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]
    return cpu_s, rss, hwm


def profiler(state: Path) -> list[str]:
    """`BENCH_PROFILE=1` runs the connector under cProfile, written to the state dir."""
    if not os.environ.get("BENCH_PROFILE"):
        return []
    return ["-m", "cProfile", "-o", str(state / "connector.prof")]


def request_value(seed: str, number: int) -> bytes:
    return encoder.encode(
        NotificationRequest(
            id=f"{seed}-{number}",
            device_token=device_token(seed, number),
            topic=BUNDLE_ID,
            aps=aps(number),
        )
    )


async def fill(bootstrap: str, topic: str, seed: str, n: int) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=262144
    )
    await producer.start()
    try:
        pending = []
        for number in range(n):
            pending.append(
                await producer.send(
                    topic, request_value(seed, number), key=f"{seed}-{number}".encode()
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
                progress("filling the topic", number + 1, n)
        await asyncio.gather(*pending)
        progress("filling the topic", n, n)
    finally:
        await producer.stop()


async def results_written(consumer: AIOKafkaConsumer, topic: str) -> int:
    partitions = [TopicPartition(topic, p) for p in range(stack.TOPICS["apns.results"])]
    ends = await consumer.end_offsets(partitions)
    return sum(ends.values())


async def count_results(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return await results_written(consumer, topic)
    finally:
        await consumer.stop()


async def watch(
    bootstrap: str, topic: str, pid: int, target: int, label: str, timeout_s: float
) -> list[tuple[float, int, float, float]]:
    """Samples of (time, outcomes written, CPU s, RSS MB) until `target` outcomes."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    samples: list[tuple[float, int, float, float]] = []
    try:
        deadline = time.monotonic() + timeout_s
        progressed = time.monotonic()
        while time.monotonic() < deadline:
            written = await results_written(consumer, topic)
            if samples and written > samples[-1][1]:
                progressed = time.monotonic()
            elif time.monotonic() - progressed > STALL_S:
                raise TimeoutError(f"{label}: no outcome written for {STALL_S} s")
            cpu_s, rss, _ = cpu_and_rss(pid)
            samples.append((time.time(), written, cpu_s, rss))
            rate = ""
            if len(samples) > 4:
                t0, w0 = samples[-5][0], samples[-5][1]
                rate = f"{(written - w0) / (samples[-1][0] - t0):.0f}/s"
            progress(label, min(written, target), target, rate)
            if written >= target:
                return samples
            await asyncio.sleep(0.25)
    finally:
        await consumer.stop()
    raise TimeoutError(f"{label}: fewer than {target} outcomes after {timeout_s} s")


async def paced(
    bootstrap: str, topic: str, seed: str, rate: float, count: int
) -> dict[str, float]:
    """Append `count` requests at `rate` per second; their scheduled send times."""
    # This process holds the outcomes read back so far; a full collection of them
    # would hold the schedule up, and the connector would be blamed for the delay.
    gc.collect()
    gc.freeze()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    scheduled: dict[str, float] = {}
    try:
        started = time.time() + 0.2
        for number in range(count):
            at = started + number / rate
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            request_id = f"{seed}-{number}"
            scheduled[request_id] = at
            await producer.send(
                topic, request_value(seed, number), key=request_id.encode()
            )
            if number % 500 == 0:
                progress(f"paced {seed}", number, count)
        await producer.flush()
        progress(f"paced {seed}", count, count)
    finally:
        await producer.stop()
    return scheduled


async def pipeline_run(
    sender: list[str],
    bootstrap: str,
    state: Path,
    credentials: stack.Credentials,
    port: int,
    n: int,
    in_flight: int,
    paced_s: float,
) -> dict[str, Any]:
    run = stack.Run(bootstrap, state, credentials, port, BUNDLE_ID)
    await ensure_topics(bootstrap, stack.topics(run.prefix))
    # An outcome's timestamp is then the broker's append, not the connector's send:
    # latency includes the wait for the broker's acknowledgement.
    await set_topic_config(
        bootstrap, run.results, {"message.timestamp.type": "LogAppendTime"}
    )
    stack.write_config(
        run.config,
        bootstrap=bootstrap,
        group_id=run.group,
        credentials=credentials,
        simulator_port=port,
        bundle_id=BUNDLE_ID,
        max_in_flight=in_flight,
        prefix=run.prefix,
    )
    seed = "max"
    await fill(bootstrap, run.requests, seed, n)

    connector = stack.Process(
        "connector",
        [
            *sender,
            sys.executable,
            *profiler(state),
            "-m",
            "connector",
            "run",
            "--config",
            str(run.config),
            "--log-level",
            "warning",
        ],
        state / "connector.log",
    )
    try:
        pid = connector.popen.pid
        samples = await watch(bootstrap, run.results, pid, n, "connector (N)", 1800)
        _, _, peak_rss = cpu_and_rss(pid)
        expected = {f"{seed}-{i}" for i in range(n)}
        read = await stack.read_outcomes(
            bootstrap, expected, topic=run.results, timeout_s=300, settle_s=2
        )
        outcomes = [seen[0][0] for seen in read.outcomes.values()]
        first_consumed_ms = min(o.timings.consumed_ms for o in outcomes)
        last_written_ms = max(ts for seen in read.outcomes.values() for _, ts in seen)
        elapsed_s = max(last_written_ms - first_consumed_ms, 1) / 1000
        started = next(s for s in samples if s[1] > 0) if samples[-1][1] else samples[0]
        before = samples[max(0, samples.index(started) - 1)]
        cpu_s = samples[-1][2] - before[2]
        max_run: dict[str, Any] = {
            "rate": n / elapsed_s,
            "cpu_per_request_ms": cpu_s / n * 1000,
            "peak_rss_mb": peak_rss,
            "missing": read.missing(expected),
            "duplicates": read.duplicates,
            "delivered": sum(1 for o in outcomes if o.status.value == "delivered"),
            "stages_ms": stages(read),
            "samples": samples,
        }

        latency: dict[str, Any] = {}
        for fraction in FRACTIONS:
            written = await count_results(bootstrap, run.results)
            rate = max(10.0, max_run["rate"] * fraction)
            count = max(50, int(rate * paced_s))
            tag = f"p{int(fraction * 100)}"
            scheduled = await paced(bootstrap, run.requests, tag, rate, count)
            await watch(
                bootstrap, run.results, pid, written + count, f"outcomes {tag}", 600
            )
            latency[str(fraction)] = await latencies(
                bootstrap, run.results, scheduled, rate
            )
        max_run["peak_rss_mb"] = max(peak_rss, cpu_and_rss(pid)[2])
    finally:
        exit_code = connector.stop()
    if exit_code != 0:
        raise RuntimeError(f"connector exited {exit_code}:\n{connector.log_tail()}")
    max_run["latency"] = latency
    return max_run


def stages(read: stack.ReadBack) -> dict[str, float]:
    """Median milliseconds a request spent being delivered (consumed to answered)
    and then published (answered to its outcome's append)."""
    delivering, publishing = [], []
    for seen in read.outcomes.values():
        outcome, written_ms = seen[0]
        delivering.append(outcome.timings.completed_ms - outcome.timings.consumed_ms)
        publishing.append(written_ms - outcome.timings.completed_ms)
    return {
        "delivering_p50": report.percentile(sorted(delivering), 50),
        "publishing_p50": report.percentile(sorted(publishing), 50),
        "resent": sum(1 for seen in read.outcomes.values() if seen[0][0].attempts > 1),
    }


async def latencies(
    bootstrap: str, topic: str, scheduled: dict[str, float], rate: float
) -> dict[str, Any]:
    read = await stack.read_outcomes(
        bootstrap, set(scheduled), topic=topic, timeout_s=120, settle_s=0.5
    )
    points = sorted(
        (scheduled[rid], seen[0][1] / 1000 - scheduled[rid])
        for rid, seen in read.outcomes.items()
        if rid in scheduled
    )
    values = sorted(ms for _, ms in points)
    # Where the time went, by the outcome's own timings: the producer late on its
    # schedule, the request waiting in Kafka, being delivered, being published.
    steps: dict[str, list[float]] = {
        "late": [],
        "queued": [],
        "delivering": [],
        "publishing": [],
    }
    for rid, seen in read.outcomes.items():
        if rid not in scheduled:
            continue
        outcome, written_ms = seen[0]
        timings = outcome.timings
        requested_ms = timings.requested_ms or timings.consumed_ms
        steps["late"].append(requested_ms - scheduled[rid] * 1000)
        steps["queued"].append(timings.consumed_ms - requested_ms)
        steps["delivering"].append(timings.completed_ms - timings.consumed_ms)
        steps["publishing"].append(written_ms - timings.completed_ms)
    resent = sum(
        1
        for rid in scheduled
        if rid in read.outcomes and read.outcomes[rid][0][0].attempts > 1
    )
    return {
        "resent": resent,
        "rate": rate,
        "count": len(values),
        **{
            f"{step}_p50_ms": report.percentile(sorted(spent), 50)
            for step, spent in steps.items()
        },
        "missing": len(scheduled) - len(values),
        "p50_ms": report.percentile(values, 50) * 1000,
        "p99_ms": report.percentile(values, 99) * 1000,
        "points": [(at - points[0][0], ms * 1000) for at, ms in points],
    }
