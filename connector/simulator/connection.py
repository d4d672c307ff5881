"""One client connection to the simulator: HTTP/2 framing, streams and flow control.

The connection gathers each request until its END_STREAM, hands the complete request
to the rules, and writes the answer. Everything the events of one network read cause
is written back with a single transport write, so a client sending many requests at
once gets their answers in few packets.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import ssl
import uuid
from collections.abc import Callable, Iterable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from connector.apns.push_types import Header
from connector.simulator.auth import ConnectionAuth
from connector.simulator.faults import Act, Faults, goaway_frame
from connector.simulator.received import ReceivedRequest, masked_path
from connector.simulator.rules import Answer, Request, Rules, valid_apns_id

logger = logging.getLogger(__name__)

# APNs is reachable only over HTTP/2, negotiated by ALPN.
ALPN_H2 = "h2"
# The limit Apple's servers announce.
MAX_HEADER_LIST_SIZE = 8000

_CONTENT_TYPE = "content-type"
_CONTENT_LENGTH = "content-length"
_JSON = "application/json"


@dataclasses.dataclass(slots=True)
class _Stream:
    """A request still arriving."""

    method: str
    path: str
    headers: dict[str, str]
    repeated_header: bool
    body: bytearray = dataclasses.field(default_factory=bytearray)


class SimulatorConnection(asyncio.Protocol):
    """The server side of one HTTP/2 connection from a provider."""

    def __init__(
        self,
        *,
        connection_id: int,
        rules: Rules,
        auth_for: Callable[[asyncio.Transport], ConnectionAuth],
        max_concurrent_streams: int,
        record: Callable[[ReceivedRequest], None],
        opened: Callable[[SimulatorConnection], None],
        closed: Callable[[SimulatorConnection], None],
        faults: Faults | None = None,
        open_streams_seen: list[int] | None = None,
    ) -> None:
        self.connection_id = connection_id
        self._faults = faults or Faults()
        # For each complete request, how many streams were open on its connection.
        self._open_streams_seen = [] if open_streams_seen is None else open_streams_seen
        self._requests = 0
        # The last stream id named by a GOAWAY we sent; later streams go unanswered.
        self._goaway_last: int | None = None
        self._rules = rules
        self._auth_for = auth_for
        self._record = record
        self._opened = opened
        self._closed = closed
        # Requests are validated as strictly as Apple would; the answers are ours,
        # well-formed by construction, and checking them again would cost a good
        # part of the time per request.
        self._h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        self._h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            },
        )
        self._transport: asyncio.Transport | None = None
        self._auth: ConnectionAuth | None = None
        self._streams: dict[int, _Stream] = {}
        # Answer bodies waiting for the client to open its flow-control window.
        self._unsent: dict[int, bytes] = {}
        self._peer_finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

        # With TLS, asyncio calls this after the handshake, so ALPN is settled.
        ssl_object = transport.get_extra_info("ssl_object")
        if (
            not isinstance(ssl_object, ssl.SSLObject)
            or ssl_object.selected_alpn_protocol() != ALPN_H2
        ):
            logger.warning(
                "connection refused, h2 not negotiated connection=%d",
                self.connection_id,
            )
            transport.close()
            return

        self._auth = self._auth_for(transport)
        self._opened(self)
        logger.debug("connection opened connection=%d", self.connection_id)

        self._h2.initiate_connection()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._streams.clear()
        self._unsent.clear()
        if self._auth is not None:
            self._closed(self)
            logger.debug("connection closed connection=%d", self.connection_id)

    def data_received(self, data: bytes) -> None:
        try:
            for event in self._h2.receive_data(data):
                self._handle(event)
        except h2.exceptions.ProtocolError as error:
            # When the client broke the protocol, h2 has queued a GOAWAY naming the
            # error: send it and hang up.
            logger.warning(
                "protocol error connection=%d error=%s",
                self.connection_id,
                type(error).__name__,
            )
            self._flush()
            self._close_transport()
            return

        self._flush()
        if self._peer_finished and not self._streams and not self._unsent:
            self._close_transport()
        self._close_if_drained()

    # The client reads slower than we answer: stop reading its requests until the
    # answers already written have drained.
    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def close(self) -> None:
        """Say GOAWAY and close; streams in flight go unanswered, as with Apple."""
        if self._transport is None or self._transport.is_closing():
            return
        self._h2.close_connection()
        self._flush()
        self._close_transport()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._streams[event.stream_id] = _new_stream(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            # Hand the window back at once, whatever became of the stream, so a long
            # run of large bodies never starves the connection window.
            self._h2.acknowledge_received_data(
                event.flow_controlled_length, event.stream_id
            )
        elif isinstance(event, h2.events.StreamEnded):
            self._on_request(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self._streams.pop(event.stream_id, None)
            self._unsent.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            self._send_unsent()
        elif isinstance(event, h2.events.ConnectionTerminated):
            # The client will open no more streams; finish the open ones first.
            self._peer_finished = True

    # Faults

    def announce_stream_limit(self, limit: int) -> None:
        """Send SETTINGS with a new MAX_CONCURRENT_STREAMS, as APNs does at will."""
        self._h2.update_settings(
            {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: limit}
        )
        self._flush()

    def send_goaway(
        self, last_stream_id: int | None = None, debug: bytes = b""
    ) -> None:
        """GOAWAY naming `last_stream_id` (default: the newest stream received);
        streams up to it are still answered, then the connection closes."""
        if self._transport is None or self._transport.is_closing():
            return
        last = (
            self._h2.highest_inbound_stream_id
            if last_stream_id is None
            else last_stream_id
        )
        self._goaway_last = last
        self._flush()
        self._transport.write(goaway_frame(last, debug))
        self._close_if_drained()

    def _on_request(self, stream_id: int) -> None:
        """A request arrived whole: apply the faults, then answer it (or not)."""
        if self._goaway_last is not None and stream_id > self._goaway_last:
            # Beyond the GOAWAY: never processed, as the client was told.
            self._streams.pop(stream_id, None)
            return

        self._requests += 1
        self._open_streams_seen.append(len(self._streams))
        act = self._faults.act(self._requests)
        if act is Act.DROP:
            self.abort()
            return
        if act is Act.REFUSE:
            self._streams.pop(stream_id, None)
            self._h2.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return

        if self._faults.answer_delay_s > 0:
            asyncio.get_running_loop().call_later(
                self._faults.answer_delay_s, self._answer_late, stream_id, act
            )
            return
        self._answer(stream_id)
        if act is Act.ANSWER_THEN_GOAWAY:
            self.send_goaway(stream_id, self._faults.goaway_debug_data)

    def _answer_late(self, stream_id: int, act: Act) -> None:
        if self._transport is None or self._transport.is_closing():
            return
        if self._goaway_last is not None and stream_id > self._goaway_last:
            self._streams.pop(stream_id, None)
            return
        self._answer(stream_id)
        self._flush()
        if act is Act.ANSWER_THEN_GOAWAY:
            self.send_goaway(stream_id, self._faults.goaway_debug_data)
        self._close_if_drained()

    def _close_if_drained(self) -> None:
        last = self._goaway_last
        if last is None or any(stream_id <= last for stream_id in self._streams):
            return
        self._flush()
        self._close_transport()

    def _answer(self, stream_id: int) -> None:
        stream = self._streams.pop(stream_id, None)
        if stream is None or self._auth is None:
            return
        request = Request(
            method=stream.method,
            path=stream.path,
            headers=stream.headers,
            repeated_header=stream.repeated_header,
            body=bytes(stream.body),
        )

        answer = self._rules.answer(request, self._auth)
        apns_id = valid_apns_id(stream.headers.get(Header.ID)) or str(uuid.uuid4())
        try:
            self._send_answer(stream_id, answer, apns_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.StreamIDTooLowError):
            # The client reset the stream after sending all of it, within the same
            # read, and h2 has forgotten it (which one h2 raises depends on whether
            # a later stream was opened). The request arrived whole: record it.
            logger.debug(
                "stream reset before its answer connection=%d stream=%d",
                self.connection_id,
                stream_id,
            )

        self._record(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                headers=stream.headers,
                body=request.body,
                status=answer.status,
                reason=answer.reason,
                apns_id=apns_id,
                connection_id=self.connection_id,
            )
        )
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "answered connection=%d stream=%d path=%s status=%d reason=%s "
                "apns_id=%s",
                self.connection_id,
                stream_id,
                masked_path(request.path),
                answer.status,
                answer.reason,
                apns_id,
            )

    def _send_answer(self, stream_id: int, answer: Answer, apns_id: str) -> None:
        headers = [(":status", str(answer.status)), (Header.ID.value, apns_id)]
        if answer.reason is None:
            self._h2.send_headers(stream_id, headers, end_stream=True)
            return

        error: dict[str, str | int] = {"reason": answer.reason.value}
        if answer.timestamp_ms is not None:
            error["timestamp"] = answer.timestamp_ms
        body = json.dumps(error, separators=(",", ":")).encode()
        headers += [(_CONTENT_TYPE, _JSON), (_CONTENT_LENGTH, str(len(body)))]
        self._h2.send_headers(stream_id, headers)
        self._send_body(stream_id, body)

    def _send_body(self, stream_id: int, body: bytes) -> None:
        """Send as much of `body` as the client's windows allow; keep the rest."""
        allowed = min(
            self._h2.local_flow_control_window(stream_id),
            self._h2.max_outbound_frame_size,
            len(body),
        )
        if allowed > 0:
            self._h2.send_data(
                stream_id, body[:allowed], end_stream=allowed == len(body)
            )
        if allowed < len(body):
            self._unsent[stream_id] = body[allowed:]
        else:
            self._unsent.pop(stream_id, None)

    def _send_unsent(self) -> None:
        for stream_id, body in list(self._unsent.items()):
            try:
                self._send_body(stream_id, body)
            except h2.exceptions.StreamClosedError:
                self._unsent.pop(stream_id, None)

    def _flush(self) -> None:
        if self._faults.stall:
            # Held back, PING acknowledgements included: the client hears nothing.
            return
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _new_stream(raw_headers: Iterable[tuple[bytes, bytes]]) -> _Stream:
    """A stream for a request whose headers have arrived."""
    stream = _Stream(method="", path="", headers={}, repeated_header=False)
    for raw_name, raw_value in raw_headers:
        # h2 has checked that names are lowercase tokens; values may carry any
        # bytes, kept losslessly so their sizes stay exact.
        name = raw_name.decode("latin-1")
        value = raw_value.decode("utf-8", "surrogateescape")
        if name == ":method":
            stream.method = value
        elif name == ":path":
            stream.path = value
        elif name.startswith(":"):
            continue
        elif name in stream.headers:
            stream.repeated_header = True
        else:
            stream.headers[name] = value
    return stream
