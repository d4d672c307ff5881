"""No JWT, key material or full device token in any log line at DEBUG, any span, or
any outcome, after a mixed run in the test's event loop against the real broker and
the simulator."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from connector import logs, settings, stack
from connector.simulator.server import Simulator

# Every JWT starts with the base64 of `{"`.
JWT_PREFIX = "eyJ"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The process's logging as `run` configures it at DEBUG, into a buffer; every
    library at DEBUG but those the connector silences on purpose."""
    root = logging.getLogger()
    touched = [root, *(logging.getLogger(n) for n in ("aiokafka", *logs.SILENCED))]
    saved = [(logger, logger.level, logger.handlers[:]) for logger in touched]
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)
    try:
        yield buffer
    finally:
        for logger, level, handlers in saved:
            logger.setLevel(level)
            logger.handlers[:] = handlers


async def test_no_secret_reaches_a_log_line_a_span_or_an_outcome(
    telemetry_run: stack.Run,
    answering: Simulator,
    credentials: stack.Credentials,
    tokens: Any,
    mixed: list[Any],
    kafka_io: Any,
    in_process: Any,
    debug_log: io.StringIO,
) -> None:
    run = telemetry_run
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    await kafka_io.produce(run.requests, mixed)
    async with in_process(settings.load(run.config), provider):
        results = await kafka_io.read(run.results, len(mixed))
    provider.shutdown()

    logged = debug_log.getvalue()
    spans = "\n".join(span.to_json() for span in exporter.get_finished_spans())
    outcomes = "\n".join(
        f"{record.key!r} {record.value!r} {record.headers!r}" for record in results
    )

    # The run did what it should, and logged it: per request at debug.
    assert len(results) == len(mixed)
    assert '"message": "answered"' in logged
    assert '"trace_id": ' in logged
    assert logged.count('"level": "DEBUG"') > len(mixed)

    jwts = {
        r.headers["authorization"].removeprefix("bearer ") for r in answering.received
    }
    key_lines = [
        line
        for line in credentials.key_file.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    secrets = [*tokens.all, *jwts, *key_lines, "PRIVATE KEY", JWT_PREFIX]
    assert len(jwts) >= 1 and len(key_lines) >= 1
    for where, text in (("logs", logged), ("spans", spans), ("outcomes", outcomes)):
        leaked = [secret for secret in secrets if secret in text]
        assert leaked == [], f"{where} carry {leaked}"
