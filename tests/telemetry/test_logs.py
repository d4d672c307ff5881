"""Log lines: JSON, with the current span's ids, and never from the libraries that
would write secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from connector import logs
from connector.errors import ConfigurationError


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    touched = [root, *(logging.getLogger(n) for n in ("aiokafka", *logs.SILENCED))]
    saved = [(logger, logger.level, logger.handlers[:]) for logger in touched]
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


def test_a_line_written_in_a_span_carries_its_ids(restored_logging: None) -> None:
    buffer = io.StringIO()
    logs.configure("DEBUG", stream=buffer)
    log = logging.getLogger("connector.pipeline")
    provider = TracerProvider()

    log.info("outside", extra={"partition": 3})
    with provider.get_tracer("test").start_as_current_span("process") as span:
        log.debug("inside", extra={"offset": 7})
    provider.shutdown()

    outside, inside = (json.loads(line) for line in buffer.getvalue().splitlines())
    context = span.get_span_context()
    del outside["time"], inside["time"]
    assert outside == {
        "level": "INFO",
        "logger": "connector.pipeline",
        "message": "outside",
        "partition": 3,
    }
    assert inside == {
        "level": "DEBUG",
        "logger": "connector.pipeline",
        "message": "inside",
        "offset": 7,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
    }


def test_the_libraries_that_would_log_secrets_stay_quiet_at_debug(
    restored_logging: None,
) -> None:
    logs.configure("debug", stream=io.StringIO())

    # hpack writes the authorization header (the JWT), httpx the device token's URL.
    assert {
        name: logging.getLogger(name).getEffectiveLevel()
        for name in ("hpack", "h2", "httpcore", "httpx", "aiokafka", "connector")
    } == {
        "hpack": logging.WARNING,
        "h2": logging.WARNING,
        "httpcore": logging.WARNING,
        "httpx": logging.WARNING,
        "aiokafka": logging.ERROR,
        "connector": logging.DEBUG,
    }


def test_an_unknown_log_level_stops_the_connector_at_start(
    restored_logging: None,
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        logs.configure("verbose")
    assert str(raised.value) == (
        "telemetry.log_level: 'verbose' is not one of DEBUG, INFO, WARNING, ERROR, "
        "CRITICAL"
    )
