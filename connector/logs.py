"""Log lines as JSON, one object per line, with context as fields.

Modules log with `logging.getLogger(__name__)` and pass context in `extra`; this module
only decides the format, once, at start.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

FIELDS = "{asctime}{levelname}{name}{message}"


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            FIELDS,
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

    # aiokafka reports every reconnect at warning; its errors still show.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    # hpack logs every header it codes at debug, the authorization header among
    # them: these libraries never log below warning, whatever our level.
    for chatty in ("hpack", "h2", "httpcore", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
