"""One request on one stream of a connection, until its answer or its failure."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.apns.connection import Connection


class Answer:
    """The status, apns-id and body APNs answered, and the connection it came on."""

    __slots__ = ("apns_id", "body", "connection", "status")

    def __init__(
        self, status: int, apns_id: str | None, body: bytes, connection: Connection
    ) -> None:
        self.status = status
        self.apns_id = apns_id
        self.body = body
        self.connection = connection


class Exchange:
    """A request in flight: its stream, what has come back, what is still to send."""

    __slots__ = (
        "apns_id",
        "body",
        "future",
        "status",
        "stream_id",
        "unsent",
        "window",
    )

    def __init__(
        self, stream_id: int, future: asyncio.Future[Answer], window: int
    ) -> None:
        self.stream_id = stream_id
        self.future = future
        self.status = 0
        self.apns_id: str | None = None
        self.body = b""
        # Request body bytes still held back by flow control, and the stream's
        # send window.
        self.unsent = b""
        self.window = window

    def answer(self, connection: Connection) -> None:
        if not self.future.done():
            self.future.set_result(
                Answer(self.status, self.apns_id, self.body, connection)
            )

    def fail(self, error: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(error)
