"""The connections of one app to APNs, and which request goes on which.

A request takes a stream on the open connection with the most room. When every
connection runs at the limit the server set, and fewer than `max_connections` are
open, one more is opened; only one opens at a time, and after a failure the next
attempt waits an exponential, jittered delay, so an unreachable APNs never sees a
storm of handshakes. Requests that find no room wait in line, each until its own
deadline.

Requests APNs did not process (a refused stream, a stream beyond a GOAWAY's last
stream id) are resent at once on another stream, within the same deadline. A
connection that went away is replaced when requests need one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Callable

from connector.apns.auth import ProviderToken
from connector.apns.connection import Connection, State
from connector.apns.exchange import Answer, Exchange
from connector.apns.proxy import ProxyAddress
from connector.errors import ConnectionFailed, NotProcessed, RequestTimedOut

log = logging.getLogger(__name__)

RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 30.0


class ConnectionPool:
    """Up to `max_connections` HTTP/2 connections to one host, for one app."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        token_factory: Callable[[], ProviderToken] | None,
        max_connections: int,
        connect_timeout_s: float,
        ping_interval_s: float,
        ping_timeout_s: float,
        proxy: ProxyAddress | None = None,
    ) -> None:
        self.host = host
        self._proxy = proxy
        self.port = port
        self._ssl_context = ssl_context
        self._token_factory = token_factory
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self.connections: list[Connection] = []
        self.opened = 0
        self._connecting: asyncio.Task[None] | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._failures = 0
        self._next_attempt_at = 0.0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
    ) -> Answer:
        """Send one request and return APNs' answer, whatever its status.

        Raises `RequestTimedOut` when no answer came within `timeout_s` (waiting for
        a stream included) and `ConnectionFailed` when the connection broke under it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        woken = False
        while True:
            # Those already in line go first, unless this request was just let in.
            connection = self._pick() if woken or not self._waiters else None
            if connection is None:
                await self._wait(deadline, timeout_s)
                woken = True
                continue

            exchange = connection.send(path, headers, body)
            timer = loop.call_at(deadline, _expire, connection, exchange, timeout_s)
            try:
                return await exchange.future
            except NotProcessed:
                log.debug("resending a request APNs did not process")
                continue
            except asyncio.CancelledError:
                connection.cancel(exchange)
                raise
            finally:
                timer.cancel()

    def retire(self, connection: Connection, why: str) -> None:
        """Send no more on `connection`; the next requests get a fresh one."""
        connection.retire(why)

    async def aclose(self) -> None:
        self._closed = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        for connection in list(self.connections):
            connection.close()
        self._fail_waiters("the client is closed")

    # Choosing and opening connections

    def _pick(self) -> Connection | None:
        best, room = None, 0
        for connection in self.connections:
            if connection.state is State.OPEN:
                free = connection.budget.free
                if free > room:
                    best, room = connection, free
        return best

    async def _wait(self, deadline: float, timeout_s: float) -> None:
        if self._closed:
            raise ConnectionFailed("the client is closed")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self._grow()
        timer = loop.call_at(deadline, _time_out, waiter, timeout_s)
        try:
            await waiter
        finally:
            timer.cancel()

    def _grow(self) -> None:
        """Open one more connection if every open one is full and the cap allows."""
        if self._closed or self._connecting is not None:
            return
        live = [c for c in self.connections if c.state in (State.OPEN, State.OPENING)]
        if len(live) >= self._max_connections:
            return
        if any(not c.budget.saturated for c in live):
            return

        loop = asyncio.get_running_loop()
        wait_s = self._next_attempt_at - loop.time()
        if wait_s > 0:
            if self._retry_timer is None:
                self._retry_timer = loop.call_later(wait_s, self._retry)
            return
        self._connecting = loop.create_task(self._connect())

    def _retry(self) -> None:
        self._retry_timer = None
        if self._waiters:
            self._grow()

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        token = self._token_factory() if self._token_factory is not None else None
        connection = Connection(
            authority=self.host if self.port == 443 else f"{self.host}:{self.port}",
            token=token,
            ping_interval_s=self._ping_interval_s,
            ping_timeout_s=self._ping_timeout_s,
            changed=self._changed,
        )
        try:
            await connection.open(
                self.host,
                self.port,
                self._ssl_context,
                self._connect_timeout_s,
                self._proxy,
            )
        except ConnectionFailed as exc:
            self._failures += 1
            ceiling = min(
                RECONNECT_MAX_S, RECONNECT_FIRST_S * 2 ** (self._failures - 1)
            )
            delay_s = random.uniform(ceiling / 2, ceiling)
            self._next_attempt_at = loop.time() + delay_s
            log.warning(
                "cannot connect to APNs",
                extra={
                    "host": self.host,
                    "port": self.port,
                    "error": str(exc),
                    "failures": self._failures,
                    "next_attempt_s": round(delay_s, 3),
                },
            )
            self._connecting = None
            # With another connection open the waiters still have a way out.
            if not any(c.state is State.OPEN for c in self.connections):
                self._fail_waiters(f"cannot connect to APNs: {exc}")
            return

        self._failures = 0
        self._connecting = None
        self.opened += 1
        self.connections.append(connection)
        log.info(
            "connected to APNs",
            extra={
                "host": self.host,
                "port": self.port,
                "connections": len(self.connections),
                "stream_limit": connection.budget.server_limit,
            },
        )
        self._wake()

    def _changed(self, connection: Connection) -> None:
        """A connection freed streams, got a new limit, or began to end."""
        if connection.state is State.CLOSED and connection in self.connections:
            self.connections.remove(connection)
        if self._waiters:
            self._wake()
            if self._waiters:
                self._grow()

    def _wake(self) -> None:
        room = sum(c.budget.free for c in self.connections if c.state is State.OPEN)
        waiters = self._waiters
        while room > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def _fail_waiters(self, message: str) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionFailed(message))


def _expire(connection: Connection, exchange: Exchange, timeout_s: float) -> None:
    if not exchange.future.done():
        connection.cancel(exchange)
        exchange.future.set_exception(
            RequestTimedOut(f"no answer from APNs within {timeout_s} s")
        )


def _time_out(waiter: asyncio.Future[None], timeout_s: float) -> None:
    if not waiter.done():
        waiter.set_exception(
            RequestTimedOut(f"no stream free for the request within {timeout_s} s")
        )
