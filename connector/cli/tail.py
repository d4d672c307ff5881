"""`apns-connector tail`: follow the outcomes and the invalid-token events.

It reads without a consumer group, so following the topics moves nobody's offsets.
For a person, each record is one line in which a device token appears only as its
digest. With `--json`, each record is the event as published, in an envelope naming
where it was read; an invalid-token event then carries its device token in full, since
that token is what the record is for. Outcomes never carry a token.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import KafkaError

from connector.cli import exits
from connector.cli.display import invalid_token_line, outcome_line, timestamp
from connector.cli.exits import CommandFailed
from connector.cli.options import load_settings, positive_int
from connector.events import InvalidToken, Outcome
from connector.producer import kafka_problem, topic_partitions
from connector.settings import KafkaSettings

DESCRIPTION = """\
Print the outcomes (apns.results) and invalid-token events (apns.invalid-tokens) as
they are published, until Ctrl-C or SIGTERM (exit code 0) or --count records. Device
tokens are shown as a 12-character digest, except in --json output of invalid-token
events, whose token is their purpose."""

EXAMPLE = """\
example:
  apns-connector tail --config connector.toml
  apns-connector tail --bootstrap kafka-0:9092 --from-beginning --json --count 100"""

_READ_WAIT_MS = 200


class Envelope(msgspec.Struct):
    """A `--json` line: where the event was read, and the event as published."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    event: msgspec.Raw


_envelope_encoder = msgspec.json.Encoder()
_outcome_decoder = msgspec.json.Decoder(Outcome)
_invalid_token_decoder = msgspec.json.Decoder(InvalidToken)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "tail",
        parents=parents,
        help="follow outcomes and invalid-token events, for a person or as JSON",
        description=DESCRIPTION,
        epilog=f"{EXAMPLE}\n\n{exits.SUMMARY}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object a line (see above)"
    )
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest records kept; default: only new ones",
    )
    parser.add_argument(
        "--count", type=positive_int, metavar="N", help="stop after N records"
    )
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    lines = Lines(settings.kafka.invalid_tokens_topic, as_json=args.json)
    asyncio.run(_follow(settings.kafka, lines, args.from_beginning, args.count))
    return exits.OK


async def _follow(
    kafka: KafkaSettings,
    lines: Callable[[ConsumerRecord], str | None],
    from_beginning: bool,
    count: int | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    try:
        await consumer.start()
        topics = [kafka.results_topic, kafka.invalid_tokens_topic]
        await _assign(consumer, topics, kafka.bootstrap, from_beginning)
        print(
            f"tail: following {' and '.join(topics)} on {kafka.bootstrap}",
            file=sys.stderr,
            flush=True,
        )

        printed = 0
        while not stop.is_set() and (count is None or printed < count):
            batches = await consumer.getmany(timeout_ms=_READ_WAIT_MS)
            records = sorted(
                (record for batch in batches.values() for record in batch),
                key=lambda record: (record.timestamp, record.topic, record.offset),
            )
            for record in records[: None if count is None else count - printed]:
                line = lines(record)
                if line is not None:
                    print(line, flush=True)
                    printed += 1
    except KafkaError as exc:
        raise CommandFailed(kafka_problem(kafka.bootstrap, exc)) from exc
    finally:
        await consumer.stop()


async def _assign(
    consumer: AIOKafkaConsumer, topics: list[str], bootstrap: str, from_beginning: bool
) -> None:
    partitions = await topic_partitions(bootstrap, topics)
    consumer.assign(partitions)
    if from_beginning:
        await consumer.seek_to_beginning(*partitions)
    else:
        await consumer.seek_to_end(*partitions)
    # Resolved now, so that "following" is true once it is printed.
    for partition in partitions:
        await consumer.position(partition)


class Lines:
    """The line printed for each record, or None for a record that is skipped."""

    def __init__(self, invalid_tokens_topic: str, *, as_json: bool) -> None:
        self._invalid_tokens_topic = invalid_tokens_topic
        self._as_json = as_json

    def __call__(self, record: ConsumerRecord) -> str | None:
        try:
            if self._as_json:
                return self._json(record)
            return self._for_a_person(record)
        except (msgspec.DecodeError, TypeError) as exc:
            print(
                f"tail: skipped {record.topic}/{record.partition}@{record.offset}: "
                f"{exc}",
                file=sys.stderr,
                flush=True,
            )
            return None

    def _for_a_person(self, record: ConsumerRecord) -> str:
        when = timestamp(record.timestamp)
        if record.topic == self._invalid_tokens_topic:
            event = _invalid_token_decoder.decode(record.value)
            return f"{when} invalid-token {invalid_token_line(event)}"
        return f"{when} outcome {outcome_line(_outcome_decoder.decode(record.value))}"

    def _json(self, record: ConsumerRecord) -> str:
        # Checked as JSON, then passed on byte for byte, unknown fields included.
        msgspec.json.decode(record.value)
        envelope = Envelope(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp,
            event=msgspec.Raw(record.value),
        )
        return _envelope_encoder.encode(envelope).decode()
