"""The local broker's command line: fetch the jars, start a broker, stop it.

``start`` leaves the broker running in the background after the command exits, writes
``pid`` and ``bootstrap`` into the state dir and prints the bootstrap as the only line
on stdout, so scripts can read it. The broker creates no topic by itself, so ``start``
creates the connector's four (``--no-topics`` leaves that to you)::

    BOOTSTRAP=$(python -m connector.kafka.broker start --state-dir .state/kafka)
    python -m connector.kafka.broker stop --state-dir .state/kafka
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from connector import stack
from connector.kafka.broker import KAFKA_VERSION, BrokerError, LocalBroker, ensure_jars
from connector.kafka.topics import TopicError, ensure_topics

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    # stdout carries only the answer (a path or the bootstrap); progress goes to stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    try:
        if args.command == "fetch":
            print(ensure_jars(args.version))
        elif args.command == "start":
            bootstrap = start(
                args.state_dir, version=args.version, heap_mb=args.heap_mb
            )
            if args.topics:
                asyncio.run(ensure_topics(bootstrap, stack.topics()))
            print(bootstrap)
        else:
            stop(args.state_dir)
    except (BrokerError, TopicError) as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def start(state_dir: Path, *, version: str = KAFKA_VERSION, heap_mb: int = 384) -> str:
    """Start a broker that outlives this process; its bootstrap once it is ready."""
    state_dir = state_dir.resolve()
    # Starting twice on one state dir answers with the broker already running.
    if running_pid(state_dir) is not None:
        return (state_dir / "bootstrap").read_text().strip()

    broker = LocalBroker(state_dir, version=version, heap_mb=heap_mb)
    bootstrap = broker.start()
    (state_dir / "pid").write_text(f"{broker.detach()}\n")
    (state_dir / "bootstrap").write_text(f"{bootstrap}\n")
    return bootstrap


def stop(state_dir: Path, timeout_s: float = 20) -> None:
    """Stop the broker started in ``state_dir``: SIGTERM, SIGKILL after the timeout."""
    state_dir = state_dir.resolve()
    pid = running_pid(state_dir)
    for sig, grace_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        if pid is None or not _signal_and_wait(pid, sig, grace_s):
            break
    else:
        raise BrokerError(f"kafka broker pid={pid} survived SIGKILL")

    if pid is not None:
        logger.info("kafka broker stopped pid=%d state_dir=%s", pid, state_dir)
    for name in ("pid", "bootstrap"):
        (state_dir / name).unlink(missing_ok=True)


def running_pid(state_dir: Path) -> int | None:
    """The pid of the broker started in ``state_dir`` if it still runs, else None."""
    try:
        pid = int((state_dir / "pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None

    # The pid file may be stale and its number reused by another process.
    properties = str(state_dir / "server.properties").encode()
    if b"kafka.Kafka" not in cmdline or properties not in cmdline:
        return None
    return pid if _alive(pid) else None


def _signal_and_wait(pid: int, sig: signal.Signals, timeout_s: float) -> bool:
    """Send ``sig``; True while the process is still alive after ``timeout_s``."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False

    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pid)


def _alive(pid: int) -> bool:
    # The broker is no child of ours; a zombie its new parent has not reaped yet
    # counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m connector.kafka.broker",
        description="A local single-node Kafka broker for dev, the demo and tests.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download the broker's jars once")
    start = commands.add_parser("start", help="start a broker in the background")
    stop = commands.add_parser("stop", help="stop the broker of a state dir")

    for command in (fetch, start):
        command.add_argument("--version", default=KAFKA_VERSION)
    for command in (start, stop):
        command.add_argument("--state-dir", type=Path, required=True)
    start.add_argument("--heap-mb", type=int, default=384)
    start.add_argument(
        "--no-topics",
        dest="topics",
        action="store_false",
        help=f"do not create the topics {', '.join(stack.TOPICS)}",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
