"""`apns-connector produce`: requests as JSON lines into the requests topic.

Every line is read and checked first, so a bad line stops the command before anything
is published. Each line then goes to the topic as written, keyed by its request id:
fields this version does not know are kept for a newer connector to read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from connector.cli import exits
from connector.cli.exits import CommandFailed
from connector.cli.options import load_settings, read_input
from connector.errors import DecodeError
from connector.events import decode_request
from connector.producer import PublishFailed, RequestProducer

DESCRIPTION = """\
Publish notification requests, one JSON object a line, to the requests topic, keyed
by their ids, with a progress bar on stderr. Every line is checked before the first
is sent: a line that is not a request stops the command with exit code 1 and nothing
published. Blank lines are skipped."""

EXAMPLE = """\
example:
  apns-connector produce --config connector.toml requests.jsonl
  generate-requests | apns-connector produce --bootstrap kafka-0:9092 -"""


@dataclass(frozen=True, slots=True)
class Line:
    """One checked input line: its request id and its bytes as given."""

    request_id: str
    value: bytes


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "produce",
        parents=parents,
        help="publish requests from JSON lines (a file or stdin) to the requests topic",
        description=DESCRIPTION,
        epilog=f"{EXAMPLE}\n\n{exits.SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=Path("-"),
        metavar="FILE",
        help="JSON lines; '-' or nothing reads stdin",
    )
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="show the progress bar even when stderr is not a terminal",
    )
    progress.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="never show the progress bar",
    )
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    lines = checked_lines(read_input(args.file, "FILE"))
    producer = RequestProducer.from_settings(settings.kafka)

    # None shows the bar only on a terminal; the options force it either way.
    disable = None if args.progress is None else not args.progress
    asyncio.run(_publish(producer, lines, disable))

    noun = "request" if len(lines) == 1 else "requests"
    print(f"produced {len(lines)} {noun} to {producer.requests_topic}")
    return exits.OK


def checked_lines(data: bytes) -> list[Line]:
    """Every non-blank line, decoded as a request; the first bad one raises."""
    lines = []
    for number, raw in enumerate(data.splitlines(), start=1):
        value = raw.strip()
        if not value:
            continue
        try:
            request = decode_request(value)
        except DecodeError as exc:
            raise CommandFailed(f"line {number}: {exc}; nothing was published") from exc
        lines.append(Line(request.id, value))
    return lines


async def _publish(
    producer: RequestProducer, lines: list[Line], disable: bool | None
) -> None:
    acknowledged = 0
    with tqdm(
        total=len(lines), unit="req", file=sys.stderr, disable=disable
    ) as progress:

        def count(ack: asyncio.Future[None]) -> None:
            nonlocal acknowledged
            if not ack.cancelled() and ack.exception() is None:
                acknowledged += 1
                progress.update()

        async with producer:
            try:
                acks = []
                for line in lines:
                    ack = await producer.submit(line.request_id, line.value)
                    ack.add_done_callback(count)
                    acks.append(ack)
                await asyncio.gather(*acks)
            except PublishFailed as exc:
                raise CommandFailed(
                    f"{exc}; {acknowledged} of {len(lines)} requests were published"
                ) from exc
