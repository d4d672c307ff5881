"""A whole local stack in processes: Kafka, the APNs simulator and the connector.

The demo, the benchmark and the integration tests run the real thing the same way a
user would: each part as its own process, talking over loopback.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from connector.events import Outcome
from connector.simulator.credentials import (
    TlsIdentity,
    write_signing_key,
    write_tls_identity,
)

TEAM_ID = "TEAMID1234"
KEY_ID = "KEYID12345"
TOPICS = {
    "apns.requests": 4,
    "apns.results": 4,
    "apns.invalid-tokens": 1,
    "apns.requests.dlq": 1,
}


def topics(prefix: str = "") -> dict[str, int]:
    """The four topics and their partition counts; a prefix keeps runs apart."""
    return {prefix + name: partitions for name, partitions in TOPICS.items()}


_outcome_decoder = msgspec.json.Decoder(Outcome)


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then SIGKILL after the timeout; the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait()

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Credentials:
    """A signing key registered with the simulator, and the TLS files to trust it."""

    directory: Path
    key_file: Path = field(init=False)
    public_key: bytes = field(init=False)
    tls: TlsIdentity = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key_file = self.directory / f"AuthKey_{KEY_ID}.p8"
        self.public_key = write_signing_key(self.key_file)
        self.tls = write_tls_identity(self.directory / "tls")

    @property
    def cert_file(self) -> Path:
        return self.tls.cert_path

    @property
    def signing_keys(self) -> dict[str, tuple[str, bytes]]:
        """The simulator's registry of public keys: key id -> (team id, PEM)."""
        return {KEY_ID: (TEAM_ID, self.public_key)}


def start_simulator(
    credentials: Credentials,
    state_dir: Path,
    *,
    unregistered: Iterable[str] = (),
    timeout_s: float = 20,
) -> tuple[Process, int]:
    """Run `python -m connector.simulator` on a free port; returns it and the port."""
    unregistered_file = state_dir / "unregistered.txt"
    now_ms = int(time.time() * 1000)
    unregistered_file.write_text("".join(f"{t} {now_ms}\n" for t in unregistered))
    ready = state_dir / "simulator.port"
    ready.unlink(missing_ok=True)

    process = Process(
        "simulator",
        [
            sys.executable,
            "-m",
            "connector.simulator",
            "--port",
            "0",
            "--tls-dir",
            str(credentials.directory / "tls"),
            "--signing-key",
            f"{TEAM_ID}:{KEY_ID}:{credentials.key_file}",
            "--unregistered-file",
            str(unregistered_file),
            "--ready-file",
            str(ready),
        ],
        state_dir / "simulator.log",
    )
    deadline = time.monotonic() + timeout_s
    while not ready.exists() or not ready.read_text().strip():
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"simulator did not start:\n{process.log_tail()}")
        time.sleep(0.05)
    return process, int(ready.read_text())


def write_config(
    path: Path,
    *,
    bootstrap: str,
    group_id: str,
    credentials: Credentials,
    simulator_port: int,
    bundle_id: str = "com.example.demo",
    max_in_flight: int = 1000,
    prefix: str = "",
) -> Path:
    path.write_text(
        f"""[kafka]
bootstrap = "{bootstrap}"
group_id = "{group_id}"
requests_topic = "{prefix}apns.requests"
results_topic = "{prefix}apns.results"
invalid_tokens_topic = "{prefix}apns.invalid-tokens"
dlq_topic = "{prefix}apns.requests.dlq"

[delivery]
max_in_flight = {max_in_flight}
drain_timeout_s = 10

# Port 0: several connectors share the machine; each logs the port it got.
[telemetry]
http_host = "127.0.0.1"
http_port = 0

[[apps]]
bundle_id = "{bundle_id}"
environment = "sandbox"
key_file = "{credentials.key_file}"
key_id = "{KEY_ID}"
team_id = "{TEAM_ID}"
host = "127.0.0.1"
port = {simulator_port}
ca_file = "{credentials.cert_file}"
"""
    )
    return path


def start_connector(config: Path, state_dir: Path, name: str = "connector") -> Process:
    env_argv = [sys.executable, "-m", "connector", "run", "--config", str(config)]
    return Process(name, env_argv, state_dir / f"{name}.log")


async def wait_for_group(bootstrap: str, group_id: str, timeout_s: float = 60) -> None:
    """Return once the consumer group is stable with a member: the connector is
    assigned its partitions and fetching."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                (described,) = await admin.describe_consumer_groups([group_id])
            except GroupCoordinatorNotAvailableError:
                # The offsets topic is still being created on a new broker.
                await asyncio.sleep(0.2)
                continue
            # Each group is (error, id, state, protocol type, protocol, members, ...).
            state, members = described.groups[0][2], described.groups[0][5]
            if state == "Stable" and members:
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    raise TimeoutError(f"consumer group {group_id} not stable after {timeout_s} s")


@dataclass
class ReadBack:
    """Outcomes read back from the results topic, by request id."""

    outcomes: dict[str, list[tuple[Outcome, int]]] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        return sum(len(seen) - 1 for seen in self.outcomes.values())

    def missing(self, expected: Iterable[str]) -> int:
        return sum(1 for request_id in expected if request_id not in self.outcomes)


async def read_outcomes(
    bootstrap: str,
    expected: set[str],
    *,
    topic: str = "apns.results",
    timeout_s: float = 120,
    settle_s: float = 1.0,
) -> ReadBack:
    """Read the results topic from the start until every expected id has an outcome
    (then `settle_s` more, to catch duplicates) or the timeout passes."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    read = ReadBack()
    try:
        deadline = time.monotonic() + timeout_s
        complete_at: float | None = None
        while time.monotonic() < deadline:
            if complete_at is not None and time.monotonic() > complete_at + settle_s:
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    outcome = _outcome_decoder.decode(record.value)
                    read.outcomes.setdefault(outcome.request_id, []).append(
                        (outcome, record.timestamp)
                    )
            if complete_at is None and expected <= read.outcomes.keys():
                complete_at = time.monotonic()
    finally:
        await consumer.stop()
    return read


class Run:
    """One run's own topics, consumer group and connector settings on a broker
    that other runs share, with what a test needs to drive and observe it."""

    def __init__(
        self,
        bootstrap: str,
        directory: Path,
        credentials: Credentials,
        port: int,
        bundle_id: str = "com.example.demo",
    ) -> None:
        self.bootstrap = bootstrap
        self.directory = directory
        self.prefix = f"t{secrets.token_hex(4)}."
        self.group = f"group-{self.prefix}"
        self.requests = self.prefix + "apns.requests"
        self.results = self.prefix + "apns.results"
        self.config = write_config(
            directory / "connector.toml",
            bootstrap=bootstrap,
            group_id=self.group,
            credentials=credentials,
            simulator_port=port,
            bundle_id=bundle_id,
            prefix=self.prefix,
        )
        self.started = 0
        self.processes: list[Process] = []

    def start_connector(self) -> Process:
        self.started += 1
        process = start_connector(
            self.config, self.directory, name=f"connector-{self.started}"
        )
        self.processes.append(process)
        return process

    def kill_leftovers(self) -> None:
        """Kill every connector of this run still running (a test that failed
        half-way must not leave one behind)."""
        for process in self.processes:
            if process.popen.poll() is None:
                process.kill()

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

    async def outcomes_written(self) -> int:
        """How many records the results topic holds now."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            partitions = [
                TopicPartition(self.results, p) for p in range(TOPICS["apns.results"])
            ]
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return sum(ends.values())
