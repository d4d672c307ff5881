"""Log lines as JSON, one object per line, with context as fields.

Modules log with `logging.getLogger(__name__)` and pass context in `extra`; this module
only decides the format, once, at start. A line written while a span is current
carries its `trace_id` and `span_id`, so a request's lines can be found from its trace
and the other way round.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from connector.errors import ConfigurationError

FIELDS = "{asctime}{levelname}{name}{message}"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# hpack logs every header it codes at debug, the authorization header (the JWT) among
# them, and httpx logs every request's URL, device token included, at info: these
# libraries never log below warning, whatever our level.
SILENCED = ("hpack", "h2", "httpcore", "httpx")


class SpanIds(logging.Filter):
    """Adds the current span's trace and span ids to a record, when there is one."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return True


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log line to `stream` (stderr) as JSON, from `level` up."""
    if level.upper() not in LEVELS:
        raise ConfigurationError(
            f"telemetry.log_level: {level!r} is not one of {', '.join(LEVELS)}"
        )

    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JsonFormatter(
            FIELDS,
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(SpanIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

    # aiokafka reports every reconnect at warning; its errors still show.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    for chatty in SILENCED:
        logging.getLogger(chatty).setLevel(logging.WARNING)
