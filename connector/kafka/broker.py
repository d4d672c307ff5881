"""A real single-node Kafka broker on 127.0.0.1 for dev, the demo, benchmarks and tests.

The broker comes from Maven Central as jars (see ``pom.xml`` next to this file), runs
in KRaft mode with the broker and controller roles in one JVM, and listens on loopback
ports picked at start, so several brokers can run side by side on one machine.

Set ``KAFKA_BOOTSTRAP=host:port`` to use a broker you run yourself instead;
:func:`external_bootstrap` returns it and callers skip starting one.

Command line (see ``connector/kafka/__main__.py``)::

    python -m connector.kafka.broker fetch                  # download the jars once
    python -m connector.kafka.broker start --state-dir DIR  # prints the bootstrap
    python -m connector.kafka.broker stop --state-dir DIR
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from connector.errors import ConnectorError

logger = logging.getLogger(__name__)

# 4.4.0 is the newest 4.x on Maven Central and passes our aiokafka 0.14 smoke test
# (tests/kafka/test_broker.py); pom.xml records why not 4.0.0 and when to use 3.9.x.
KAFKA_VERSION = "4.4.0"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_LOG4J_CONFIG = _HERE / "log4j2.properties"

# The readiness probe's one request: Metadata v4, the oldest version Kafka 4.x still
# serves and the newest one without flexible (tagged field) encoding.
_METADATA_API_KEY = 3
_METADATA_VERSION = 4

# A start that loses its ports to another process before the JVM binds them is
# retried with new ports this many times.
_BIND_ATTEMPTS = 3


class BrokerError(ConnectorError):
    """The local broker could not be fetched, started or stopped; the message says why."""


def external_bootstrap() -> str | None:
    """The broker given by ``KAFKA_BOOTSTRAP``, or None to start a local one."""
    value = os.environ.get("KAFKA_BOOTSTRAP", "").strip()
    return value or None


def cache_dir() -> Path:
    """Where fetched jars live: ``$APNS_CONNECTOR_CACHE`` or ``~/.cache/apns-connector``."""
    configured = os.environ.get("APNS_CONNECTOR_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "apns-connector"


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the folder of the broker's jars, running Maven once to fill it."""
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    if libs.is_dir():
        return libs

    home.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(home / ".lock"):
        # Another process may have finished the download while we waited.
        if libs.is_dir():
            return libs

        # Holding the lock, any scratch folder left here is from a killed run.
        for stale in home.glob(".libs-*"):
            shutil.rmtree(stale, ignore_errors=True)

        scratch = Path(tempfile.mkdtemp(prefix=".libs-", dir=home))
        try:
            _run_maven(scratch, version)
            # The rename is atomic: readers see no folder or a complete one.
            os.rename(scratch / "libs", libs)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return libs


def _run_maven(scratch: Path, version: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("mvn not found on PATH; Maven 3.8+ fetches the Kafka jars")

    # Maven writes target/ next to the POM, so it runs on a copy in the scratch folder
    # and never inside the source tree.
    shutil.copy(_POM, scratch / "pom.xml")
    command = [mvn, "-B", "-q", "-ntp", "-Dstyle.color=never", "package"]
    command += ["-f", str(scratch / "pom.xml")]
    command += [f"-Dkafka.version={version}", f"-Djars.dir={scratch / 'libs'}"]

    logger.info("fetching kafka jars version=%s into=%s", version, scratch.parent)
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not any((scratch / "libs").glob("kafka_2.13-*.jar")):
        output = (result.stdout + result.stderr).strip().splitlines()
        raise BrokerError(
            f"mvn could not fetch Kafka {version} (exit {result.returncode}):\n"
            + "\n".join(output[-30:])
        )
    logger.info("fetched kafka jars elapsed_s=%.1f", time.monotonic() - started)


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LocalBroker:
    """One Kafka JVM (broker and controller) on loopback ports of its own.

    With ``state_dir`` None the data lives in a temporary folder removed on
    :meth:`stop`; with a folder given, the data and ``broker.log`` stay there and a
    later start on the same folder keeps the topics.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        version: str = KAFKA_VERSION,
        heap_mb: int = 384,
    ) -> None:
        self._state_dir = state_dir.resolve() if state_dir is not None else None
        self._owns_state_dir = state_dir is None
        self._version = version
        self._heap_mb = heap_mb
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._controller_port = 0
        self._departed: set[int] = set()

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:<port>`` of the running broker."""
        if self._port is None:
            raise BrokerError("the broker is not started")
        return f"127.0.0.1:{self._port}"

    @property
    def state_dir(self) -> Path:
        if self._state_dir is None:
            raise BrokerError("the broker is not started")
        return self._state_dir

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 120) -> str:
        """Start the JVM and return the bootstrap once a metadata request answers."""
        if self._port is not None:
            return self.bootstrap

        java = _java()
        libs = ensure_jars(self._version)
        if self._state_dir is None:
            self._state_dir = Path(tempfile.mkdtemp(prefix="apns-connector-kafka-"))
        self._state_dir.mkdir(parents=True, exist_ok=True)

        deadline = time.monotonic() + timeout_s
        try:
            self._port = self._start_on_free_ports(java, libs, deadline)
        except BaseException:
            # A failed start leaves no JVM and no temporary folder behind.
            self.stop()
            raise

        atexit.register(self.stop)
        return self.bootstrap

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM the JVM, SIGKILL it after ``timeout_s``; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout_s)
            logger.info("kafka broker stopped pid=%d", process.pid)

        self._port = None
        if self._state_dir is not None and self._owns_state_dir:
            shutil.rmtree(self._state_dir, ignore_errors=True)
            self._state_dir = None

    def restart(self, down_s: float, timeout_s: float = 120) -> None:
        """Stop the JVM, stay down `down_s` seconds, then start it again on the same
        ports and data: an outage that clients must ride out on their own."""
        if self._process is None or self._port is None:
            raise BrokerError("the broker is not started")
        java, libs = _java(), ensure_jars(self._version)
        _terminate(self._process, 20)
        self._process = None
        time.sleep(down_s)

        settings = _settings(self.state_dir / "data", self._port, self._controller_port)
        properties = _write_properties(self.state_dir, settings)
        deadline = time.monotonic() + timeout_s
        if not self._run_until_ready(java, libs, properties, self._port, deadline):
            raise BrokerError(f"port {self._port} was taken during the outage")

    def detach(self) -> int:
        """Leave the JVM running after this object and process are gone; its pid."""
        if self._process is None:
            raise BrokerError("the broker is not started")
        atexit.unregister(self.stop)
        pid = self._process.pid
        # Forget the child without waiting on it: init adopts and reaps it once this
        # process exits. A Popen collected with no exit code warns, hence the 0.
        self._process.returncode = 0
        self._process = None
        return pid

    def add_departed_broker(self, node_id: int = 2, timeout_s: float = 60) -> int:
        """Register a second broker id with the controller, then stop it for good.

        Kafka caps a partition's effective ``min.insync.replicas`` at its replica
        count, so on one node raising it changes nothing. A topic created after this
        call with replication 2 gets a replica on the departed id that is never in
        sync: ``min.insync.replicas=2`` then makes acks=all writes fail with the
        retriable NOT_ENOUGH_REPLICAS, and setting it back to 1 lets them through.
        Topics of replication 1 keep landing on the live node only.
        """
        if self._port is None:
            raise BrokerError("start the broker before adding a departed one")
        if node_id in self._departed:
            return node_id
        java, libs, port = _java(), ensure_jars(self._version), _free_ports(1)[0]

        folder = self.state_dir / f"departed-{node_id}"
        settings = _settings(folder / "data", port, self._controller_port, node_id)
        properties = _write_properties(folder, settings)
        _format_storage(java, libs, properties, folder / "data", self._cluster_id())

        with (folder / "broker.log").open("ab") as log:
            process = _launch(java, libs, 192, properties, log, short_lived=True)
        try:
            # Registered once the live node's metadata lists both brokers.
            self._wait_broker_count(2, process, timeout_s)
        except BrokerError as error:
            tail = _log_tail(folder / "broker.log", 0)
            raise BrokerError(f"{error}; its log ends:\n{tail}") from error
        finally:
            _terminate(process, 20)
        self._wait_broker_count(1, None, timeout_s)

        shutil.rmtree(folder, ignore_errors=True)
        self._departed.add(node_id)
        logger.info("kafka departed broker registered node_id=%d", node_id)
        return node_id

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _start_on_free_ports(self, java: str, libs: Path, deadline: float) -> int:
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            port, self._controller_port = _free_ports(2)
            settings = _settings(self.state_dir / "data", port, self._controller_port)
            properties = _write_properties(self.state_dir, settings)
            _format_storage(java, libs, properties, self.state_dir / "data")
            if self._run_until_ready(java, libs, properties, port, deadline):
                return port
            logger.warning("kafka ports taken, retrying attempt=%d", attempt)
        raise BrokerError(f"no free ports after {_BIND_ATTEMPTS} attempts")

    def _run_until_ready(
        self, java: str, libs: Path, properties: Path, port: int, deadline: float
    ) -> bool:
        """Run the JVM until ready (True) or until it dies on a taken port (False)."""
        log_path = self.state_dir / "broker.log"
        with log_path.open("ab") as log:
            log_start = log.tell()
            self._process = _launch(java, libs, self._heap_mb, properties, log)

        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                tail = _log_tail(log_path, log_start)
                if "Address already in use" in tail:
                    return False
                raise BrokerError(f"kafka broker exited during start:\n{tail}")
            if (_broker_count(port) or 0) >= 1:
                logger.info(
                    "kafka broker ready port=%d pid=%d version=%s state_dir=%s",
                    *(port, self._process.pid, self._version, self.state_dir),
                )
                return True
            time.sleep(0.25)

        tail = _log_tail(log_path, log_start)
        raise BrokerError(f"kafka broker not ready in time:\n{tail}")

    def _wait_broker_count(
        self, count: int, process: subprocess.Popen[bytes] | None, timeout_s: float
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while _broker_count(self._port or 0) != count:
            if process is not None and process.poll() is not None:
                raise BrokerError("the departed broker exited before registering")
            if time.monotonic() > deadline:
                raise BrokerError(f"kafka did not list {count} broker(s) in time")
            time.sleep(0.25)

    def _cluster_id(self) -> str:
        meta = (self.state_dir / "data" / "meta.properties").read_text()
        return next(
            line.split("=", 1)[1].strip()
            for line in meta.splitlines()
            if line.startswith("cluster.id=")
        )

    def __repr__(self) -> str:
        return f"LocalBroker(state_dir={self._state_dir}, port={self._port})"


def _settings(
    data_dir: Path, port: int, controller_port: int, node_id: int = 1
) -> dict[str, str]:
    # Node 1 is broker and controller; any other id is a broker of node 1's quorum.
    controller = node_id == 1
    listeners = f"PLAINTEXT://127.0.0.1:{port}"
    return {
        "process.roles": "broker,controller" if controller else "broker",
        "node.id": str(node_id),
        # A static quorum of node 1; a dynamic one would need format --standalone.
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": listeners
        + (f",CONTROLLER://127.0.0.1:{controller_port}" if controller else ""),
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # One node cannot hold more than one replica of the internal topics.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # The defaults (50 partitions, a 3 s join delay) make the first group join slow.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # The cleaner's default 128 MiB buffer would take a third of a small heap.
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        # Topics are created explicitly, so a typo fails instead of creating one.
        "auto.create.topics.enable": "false",
    }


def _write_properties(folder: Path, settings: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "server.properties"
    path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    return path


def _jvm_command(
    java: str, libs: Path, heap_mb: int, *main: str, short_lived: bool = False
) -> list[str]:
    # A JVM that lives seconds starts faster without the optimising compiler; the
    # serving broker keeps it for the benchmark's sake.
    tuning = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"] if short_lived else []
    return [
        java,
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-XX:+ExitOnOutOfMemoryError",
        # Sized for a 2-core box shared with the connector and the tests.
        "-XX:ParallelGCThreads=1",
        "-XX:ConcGCThreads=1",
        *(tuning or ["-XX:+UseG1GC"]),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        "-cp",
        f"{libs}/*",
        *main,
    ]


def _launch(
    java: str,
    libs: Path,
    heap_mb: int,
    properties: Path,
    log: IO[bytes],
    *,
    short_lived: bool = False,
) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C in the caller's terminal must not kill the broker
    # behind stop()'s back, and the command line's broker outlives the command.
    return subprocess.Popen(
        _jvm_command(
            java, libs, heap_mb, "kafka.Kafka", str(properties), short_lived=short_lived
        ),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _format_storage(
    java: str, libs: Path, properties: Path, data_dir: Path, cluster_id: str = ""
) -> None:
    # A folder formatted before keeps its cluster id, and formatting it again with
    # another one fails, so a restart on the same state dir skips this step.
    if (data_dir / "meta.properties").exists():
        return

    main = ("kafka.tools.StorageTool", "format")
    command = _jvm_command(java, libs, 128, *main, short_lived=True)
    command += ["-t", cluster_id or _new_cluster_id(), "-c", str(properties)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(
            f"kafka storage format failed:\n{result.stdout}{result.stderr}"
        )


def _new_cluster_id() -> str:
    """A random id in Kafka's form: 16 bytes, URL-safe base64 without padding."""
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka avoids ids that start with "-", which a command line reads as a flag.
        if not candidate.startswith("-"):
            return candidate


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if java is None or not Path(java).exists():
        raise BrokerError("java not found; Java 17+ on PATH or JAVA_HOME runs Kafka")
    return java


def _free_ports(count: int) -> list[int]:
    # Every socket stays open until all ports are read, so the ports differ.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _broker_count(port: int) -> int | None:
    """How many live brokers a plain Metadata request lists; None without an answer."""
    client_id = b"apns-connector-probe"
    header = struct.pack(
        ">hhih", _METADATA_API_KEY, _METADATA_VERSION, 1, len(client_id)
    )
    # All topics (a null array), and never create any.
    request = header + client_id + struct.pack(">ib", -1, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            response = _read_exactly(sock, size)
    except OSError:
        return None

    # The correlation id, the throttle time, then the length of the brokers array.
    correlation_id, _, brokers = struct.unpack(">iii", response[:12])
    return int(brokers) if correlation_id == 1 else None


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks += chunk
    return bytes(chunks)


def _log_tail(path: Path, start: int, lines: int = 40) -> str:
    with path.open("rb") as log:
        log.seek(start)
        text = log.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _terminate(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the JVM, SIGKILL it if still alive after ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        logger.warning("kafka broker ignored SIGTERM pid=%d", process.pid)
        process.kill()
        process.wait()


if __name__ == "__main__":
    # `python -m connector.kafka.broker` and `python -m connector.kafka` are the same
    # command line.
    from connector.kafka.__main__ import main

    sys.exit(main())
