"""One HTTP/2 connection to APNs over TLS: streams, flow control, PING, GOAWAY.

A connection carries many requests at once, each on a stream of its own, as many as
its `StreamBudget` allows. The frames of every request started in one turn of the
event loop leave with a single transport write, and so does everything one network
read causes (SETTINGS and PING acknowledgements, window updates). Frames are read and
written by `frames.py`, header blocks coded by `header_block.py`.

What APNs may do to a connection, and what happens here:

- SETTINGS lowering MAX_CONCURRENT_STREAMS: the budget shrinks; open streams finish.
- RST_STREAM with REFUSED_STREAM: the request was not processed (`NotProcessed`).
- GOAWAY: streams above its last stream id were not processed (`NotProcessed`); the
  others still get their answers while the connection drains, then it closes.
- silence: after `ping_interval_s` without a frame a PING goes out; without an answer
  within `ping_timeout_s` the peer is taken for dead, the connection is aborted and
  its requests fail with `ConnectionFailed`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import typing
from collections.abc import Callable

from connector.apns.auth import ProviderToken
from connector.apns.budget import StreamBudget
from connector.apns.exchange import Exchange
from connector.apns.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_WINDOW,
    MAX_STREAM_ID,
    MAX_WINDOW,
    PREFACE,
    ErrorCode,
    Flag,
    FrameReader,
    FrameType,
    FramingError,
    Setting,
    error_name,
    frame,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)
from connector.apns.header_block import RequestHeaderEncoder
from connector.apns.heartbeat import Heartbeat
from connector.apns.proxy import ProxyAddress, open_tunnel
from connector.errors import ConnectionFailed, NotProcessed

log = logging.getLogger(__name__)

ALPN_H2 = "h2"
_PING_DATA = b"apnsping"
# Answers are small; windows this large never hold one back, and the connection's is
# topped up whenever half of it has been used.
_RECEIVE_WINDOW = 2**24
_HEADER_LIST_LIMIT = 2**16


class State(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    # No new streams; the open ones finish, then the connection closes.
    DRAINING = "draining"
    CLOSED = "closed"


class Connection(asyncio.Protocol):
    """The client side of one HTTP/2 connection to APNs."""

    def __init__(
        self,
        *,
        authority: str,
        token: ProviderToken | None,
        ping_interval_s: float,
        ping_timeout_s: float,
        changed: Callable[[Connection], None],
    ) -> None:
        self.authority = authority.encode()
        self.token = token
        self.state = State.OPENING
        self.budget = StreamBudget(on_probation=token is not None)
        # Transport writes so far: one per turn of the event loop, not per request.
        self.writes = 0
        self._changed = changed
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._transport: asyncio.Transport | None = None
        self._encoder = RequestHeaderEncoder()
        self._reader = FrameReader(self)
        self._reader.decoder.max_header_list_size = _HEADER_LIST_LIMIT
        self._out: list[bytes] = []
        self._exchanges: dict[int, Exchange] = {}
        self._blocked: dict[int, Exchange] = {}
        self._next_stream_id = 1
        # What the server lets us send: on the connection, on each new stream, and
        # in one frame.
        self._send_window = DEFAULT_WINDOW
        self._stream_window = DEFAULT_WINDOW
        self._max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self._received_unacknowledged = 0
        self._flush_pending = False
        self._heartbeat = Heartbeat(
            interval_s=ping_interval_s,
            timeout_s=ping_timeout_s,
            ping=self._ping,
            dead=self._dead,
        )
        self._closed_because = "APNs closed the connection"
        self._auth_text = ""
        self._auth_bytes = b""

    # Opening and closing

    async def open(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext,
        timeout_s: float,
        proxy: ProxyAddress | None = None,
    ) -> None:
        """Connect (through `proxy`'s tunnel if given), agree on h2, and wait for
        the server's SETTINGS."""
        try:
            async with asyncio.timeout(timeout_s):
                if proxy is None:
                    await self._loop.create_connection(
                        lambda: self, host, port, ssl=ssl_context, server_hostname=host
                    )
                else:
                    sock = await open_tunnel(proxy, host, port, timeout_s=timeout_s)
                    await self._loop.create_connection(
                        lambda: self, sock=sock, ssl=ssl_context, server_hostname=host
                    )
                await self._ready
        except TimeoutError as exc:
            self.abort()
            raise ConnectionFailed(
                f"{host}:{port}: no HTTP/2 session within {timeout_s} s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            self.abort()
            raise ConnectionFailed(f"{host}:{port}: {exc}") from exc

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the methods, not the class.
        self._transport = typing.cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is None or ssl_object.selected_alpn_protocol() != ALPN_H2:
            self._fail_opening(ConnectionFailed("the server did not agree to HTTP/2"))
            return

        self._out.append(PREFACE)
        self._out.append(
            settings_frame(
                {
                    Setting.ENABLE_PUSH: 0,
                    Setting.INITIAL_WINDOW_SIZE: _RECEIVE_WINDOW,
                    Setting.MAX_HEADER_LIST_SIZE: _HEADER_LIST_LIMIT,
                }
            )
        )
        self._out.append(window_update_frame(0, _RECEIVE_WINDOW - DEFAULT_WINDOW))
        self._flush()
        self._heartbeat.start()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        reason = self._closed_because if exc is None else f"connection lost: {exc}"
        self._fail_opening(ConnectionFailed(reason))
        self._close_down(ConnectionFailed(reason))

    def retire(self, why: str) -> None:
        """Start no new streams; close once the open ones are answered."""
        if self.state in (State.OPEN, State.OPENING):
            log.info("connection retiring", extra={"why": why})
            self.state = State.DRAINING
            self._closed_because = why
            self._changed(self)
        if not self._exchanges:
            self.close()

    def close(self, code: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Say GOAWAY and hang up; requests still open fail."""
        if self._transport is not None and not self._transport.is_closing():
            self._out.append(goaway_frame(0, code))
            self._flush()
            self._transport.close()
        self._close_down(ConnectionFailed(self._closed_because))

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._close_down(ConnectionFailed(self._closed_because))

    # Sending

    def send(
        self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Exchange:
        """Start one request; its answer arrives on `exchange.future`.

        The caller has made sure `budget.free` allows a stream and the state is OPEN.
        """
        stream_id = self._next_stream_id
        if stream_id > MAX_STREAM_ID:
            self.retire("stream ids used up")
            raise NotProcessed("the connection has used up its stream ids")
        self._next_stream_id = stream_id + 2

        request = [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", self.authority),
            (b":path", path),
        ]
        if self.token is not None:
            request.append((b"authorization", self._authorization(self.token)))
        request += headers
        block = self._encoder.encode(request)

        exchange = Exchange(stream_id, self._loop.create_future(), self._stream_window)
        size = self._max_frame_size
        if len(block) <= size:
            self._out.append(
                frame(FrameType.HEADERS, Flag.END_HEADERS, stream_id, block)
            )
        else:
            # Never with APNs' headers, but the block is coded: it must go whole.
            self._out.append(frame(FrameType.HEADERS, 0, stream_id, block[:size]))
            for start in range(size, len(block), size):
                last = start + size >= len(block)
                self._out.append(
                    frame(
                        FrameType.CONTINUATION,
                        Flag.END_HEADERS if last else 0,
                        stream_id,
                        block[start : start + size],
                    )
                )
        self._exchanges[stream_id] = exchange
        self.budget.take()
        exchange.unsent = body
        self._send_body(exchange)
        self._schedule_flush()
        return exchange

    def _authorization(self, token: ProviderToken) -> bytes:
        # The same token serves the connection for most of an hour: encoded once.
        header = token.header()
        if header is not self._auth_text:
            self._auth_text = header
            self._auth_bytes = header.encode()
        return self._auth_bytes

    def cancel(self, exchange: Exchange) -> None:
        """Give up on a request (its timeout passed): reset its stream."""
        if self._exchanges.pop(exchange.stream_id, None) is None:
            return
        self._blocked.pop(exchange.stream_id, None)
        self._out.append(rst_stream_frame(exchange.stream_id, ErrorCode.CANCEL))
        self._stream_done()
        self._schedule_flush()

    def _send_body(self, exchange: Exchange) -> None:
        """Send as much of the body as the windows allow; hold back the rest."""
        body = exchange.unsent
        while True:
            allowed = min(self._send_window, exchange.window, self._max_frame_size)
            if allowed >= len(body):
                self._out.append(
                    frame(FrameType.DATA, Flag.END_STREAM, exchange.stream_id, body)
                )
                self._send_window -= len(body)
                exchange.window -= len(body)
                exchange.unsent = b""
                self._blocked.pop(exchange.stream_id, None)
                return
            if allowed <= 0:
                exchange.unsent = body
                self._blocked[exchange.stream_id] = exchange
                return
            self._out.append(
                frame(FrameType.DATA, 0, exchange.stream_id, body[:allowed])
            )
            self._send_window -= allowed
            exchange.window -= allowed
            body = body[allowed:]

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._out and self._transport is not None:
            self._transport.write(b"".join(self._out))
            self.writes += 1
        self._out.clear()

    # Receiving (the FrameReader calls the on_ methods)

    def data_received(self, data: bytes) -> None:
        self._heartbeat.heard()
        try:
            self._reader.feed(data)
        except FramingError as exc:
            log.warning(
                "HTTP/2 protocol error",
                extra={"error": str(exc), "code": exc.code.name},
            )
            self._closed_because = f"HTTP/2 protocol error: {exc}"
            self.close(exc.code)
            return
        self._flush()

    def on_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        exchange = self._exchanges.get(stream_id)
        if exchange is None:
            return
        if not exchange.status:
            for name, value in headers:
                if name == b":status":
                    exchange.status = int(value)
                elif name == b"apns-id":
                    exchange.apns_id = value.decode("ascii", "replace")
            if 100 <= exchange.status < 200:
                # An interim answer; the real one follows.
                exchange.status = 0
        if end_stream:
            self._answered(exchange)

    def on_data(
        self, stream_id: int, data: bytes, flow_controlled: int, end_stream: bool
    ) -> None:
        # The connection window is handed back in bulk, once half of it is used.
        self._received_unacknowledged += flow_controlled
        if self._received_unacknowledged >= _RECEIVE_WINDOW // 2:
            self._out.append(window_update_frame(0, self._received_unacknowledged))
            self._received_unacknowledged = 0

        exchange = self._exchanges.get(stream_id)
        if exchange is None:
            return
        exchange.body += data
        if end_stream:
            self._answered(exchange)

    def _answered(self, exchange: Exchange) -> None:
        stream_id = exchange.stream_id
        del self._exchanges[stream_id]
        if exchange.unsent:
            # Answered before the whole body went out: the rest is not wanted.
            self._blocked.pop(stream_id, None)
            self._out.append(rst_stream_frame(stream_id, ErrorCode.NO_ERROR))

        if exchange.status != 403 and self.budget.accept():
            self._changed(self)
        exchange.answer(self)
        self._stream_done()

    def on_rst_stream(self, stream_id: int, code: int) -> None:
        exchange = self._exchanges.pop(stream_id, None)
        if exchange is None:
            return
        self._blocked.pop(stream_id, None)
        if code == ErrorCode.REFUSED_STREAM:
            error: Exception = NotProcessed("APNs refused the stream")
        else:
            error = ConnectionFailed(f"APNs reset the stream: {error_name(code)}")
        exchange.fail(error)
        self._stream_done()

    def _stream_done(self) -> None:
        self.budget.release()
        if self.state is State.DRAINING and not self._exchanges:
            self.close()
        else:
            self._changed(self)

    def on_settings(self, values: list[tuple[int, int]]) -> None:
        raised = False
        if not self._ready.done() and all(
            key != Setting.MAX_CONCURRENT_STREAMS for key, _ in values
        ):
            # Announcing no limit means none [RFC 9113 6.5.2].
            self.budget.announce(MAX_STREAM_ID)
        for key, value in values:
            if key == Setting.MAX_CONCURRENT_STREAMS:
                raised = self.budget.announce(value) or raised
                log.debug(
                    "stream limit changed",
                    extra={"limit": value, "in_flight": self.budget.in_flight},
                )
            elif key == Setting.INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise FramingError(ErrorCode.FLOW_CONTROL_ERROR, "window too big")
                # The change applies to the streams open now as well [RFC 9113 6.9.2].
                delta, self._stream_window = value - self._stream_window, value
                for exchange in self._exchanges.values():
                    exchange.window += delta
                raised = True
            elif key == Setting.MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME_SIZE <= value <= 2**24 - 1:
                    raise FramingError(ErrorCode.PROTOCOL_ERROR, "a bad frame size")
                self._max_frame_size = value
            elif key == Setting.HEADER_TABLE_SIZE:
                self._encoder.header_table_size = value
        self._out.append(frame(FrameType.SETTINGS, Flag.ACK, 0))
        if self._blocked:
            self._unblock()

        if not self._ready.done():
            if self.state is State.OPENING:
                self.state = State.OPEN
            self._ready.set_result(None)
        elif raised:
            self._changed(self)

    def on_window_update(self, stream_id: int, increment: int) -> None:
        if stream_id == 0:
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise FramingError(ErrorCode.FLOW_CONTROL_ERROR, "window overflow")
        else:
            exchange = self._exchanges.get(stream_id)
            if exchange is None:
                return
            exchange.window += increment
        if self._blocked:
            self._unblock()

    def _unblock(self) -> None:
        for exchange in list(self._blocked.values()):
            self._send_body(exchange)

    def on_ping(self, opaque: bytes, ack: bool) -> None:
        if not ack:
            self._out.append(ping_frame(opaque, ack=True))

    def on_goaway(self, last_stream_id: int, code: int, debug: bytes) -> None:
        text = debug[:200].decode("utf-8", "replace")
        log.warning(
            "APNs sent GOAWAY",
            extra={
                "error_code": error_name(code),
                "last_stream_id": last_stream_id,
                "debug_data": text,
                "in_flight": len(self._exchanges),
            },
        )
        self._closed_because = f"GOAWAY {error_name(code)} {text}".rstrip()
        for stream_id in [s for s in self._exchanges if s > last_stream_id]:
            exchange = self._exchanges.pop(stream_id)
            self._blocked.pop(stream_id, None)
            self.budget.release()
            exchange.fail(
                NotProcessed(f"beyond the last stream of a {self._closed_because}")
            )
        self.retire(self._closed_because)

    # Liveness

    def _ping(self) -> None:
        self._out.append(ping_frame(_PING_DATA))
        self._flush()

    def _dead(self) -> None:
        log.warning(
            "APNs does not answer PING; connection aborted",
            extra={"in_flight": len(self._exchanges)},
        )
        timeout_s = self._heartbeat.timeout_s
        self._closed_because = f"no answer to PING within {timeout_s} s"
        self.abort()

    # Endings

    def _fail_opening(self, error: ConnectionFailed) -> None:
        if not self._ready.done():
            self._ready.set_exception(error)
            # Retrieved or not, an opening failure is reported by `open`.
            self._ready.exception()
            if self._transport is not None:
                self._transport.abort()

    def _close_down(self, error: ConnectionFailed) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._heartbeat.stop()
        exchanges, self._exchanges = self._exchanges, {}
        self._blocked.clear()
        for exchange in exchanges.values():
            self.budget.release()
            exchange.fail(error)
        self._changed(self)

    def __repr__(self) -> str:
        return f"Connection(state={self.state.value}, budget={self.budget!r})"
