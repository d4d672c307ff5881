"""HTTP/2 frames for a client that sends requests and reads answers (RFC 9113).

A general-purpose HTTP/2 library (h2) runs a state machine per stream and builds an
object per frame and per event; measured here, that came to about two thirds of the
CPU the whole HTTP layer spends on a request. What APNs needs of a client is a small
part of HTTP/2: requests out as one HEADERS and one DATA frame, answers in as HEADERS
and perhaps DATA, and the connection's housekeeping (SETTINGS, PING, WINDOW_UPDATE,
RST_STREAM, GOAWAY). This module reads and writes exactly those frames; the rules of
streams and flow control live in `connection.py`.

`FrameReader.feed` parses what the network delivered and calls the matching method of
its `FrameHandler` for each complete frame, with HEADERS and their CONTINUATION frames
joined and decoded. A peer that breaks the framing rules gets a `FramingError` naming
the HTTP/2 error code to close the connection with.
"""

from __future__ import annotations

import enum
import struct
from typing import Protocol

from hpack.exceptions import HPACKError

from connector.apns.header_block import ResponseHeaderDecoder
from connector.errors import ConnectorError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# The frame size every peer must accept, and the most we announce we accept.
DEFAULT_MAX_FRAME_SIZE = 16384
# The flow-control window both sides start with, for the connection and each stream.
DEFAULT_WINDOW = 65535
MAX_WINDOW = 2**31 - 1
MAX_STREAM_ID = 2**31 - 1
_HEADER = struct.Struct(">BHBBL")


class FrameType(enum.IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Flag(enum.IntFlag):
    END_STREAM = 0x1
    ACK = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


class ErrorCode(enum.IntEnum):
    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error {code:#x}"


class Setting(enum.IntEnum):
    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6


class FramingError(ConnectorError):
    """The peer broke HTTP/2's rules; the connection ends with `code`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


# Writing


def frame(kind: FrameType, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _HEADER.pack(length >> 16, length & 0xFFFF, kind, flags, stream_id) + payload


def settings_frame(values: dict[Setting, int]) -> bytes:
    payload = b"".join(struct.pack(">HL", key, value) for key, value in values.items())
    return frame(FrameType.SETTINGS, 0, 0, payload)


def window_update_frame(stream_id: int, increment: int) -> bytes:
    return frame(FrameType.WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def rst_stream_frame(stream_id: int, code: ErrorCode) -> bytes:
    return frame(FrameType.RST_STREAM, 0, stream_id, struct.pack(">L", code))


def ping_frame(opaque: bytes, ack: bool = False) -> bytes:
    return frame(FrameType.PING, Flag.ACK if ack else 0, 0, opaque)


def goaway_frame(last_stream_id: int, code: ErrorCode, debug: bytes = b"") -> bytes:
    payload = struct.pack(">LL", last_stream_id, code) + debug
    return frame(FrameType.GOAWAY, 0, 0, payload)


# Reading


class FrameHandler(Protocol):
    """What a connection does with each frame read."""

    def on_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool
    ) -> None: ...

    def on_data(
        self, stream_id: int, data: bytes, flow_controlled: int, end_stream: bool
    ) -> None: ...

    def on_rst_stream(self, stream_id: int, code: int) -> None: ...

    def on_settings(self, values: list[tuple[int, int]]) -> None: ...

    def on_ping(self, opaque: bytes, ack: bool) -> None: ...

    def on_goaway(self, last_stream_id: int, code: int, debug: bytes) -> None: ...

    def on_window_update(self, stream_id: int, increment: int) -> None: ...


class FrameReader:
    """Cuts the bytes from the peer into frames and hands each to the handler."""

    def __init__(self, handler: FrameHandler) -> None:
        self._handler = handler
        self._buffer = bytearray()
        self.decoder = ResponseHeaderDecoder()
        self.max_frame_size = DEFAULT_MAX_FRAME_SIZE
        # A header block still waiting for CONTINUATION frames: its stream, the
        # fragments so far, and whether its HEADERS frame ended the stream.
        self._continued: tuple[int, list[bytes], bool] | None = None

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        position, end = 0, len(buffer)
        handler = self._handler
        try:
            while end - position >= 9:
                high, low, kind, flags, stream_id = _HEADER.unpack_from(
                    buffer, position
                )
                length = (high << 16) | low
                if length > self.max_frame_size:
                    raise FramingError(
                        ErrorCode.FRAME_SIZE_ERROR, f"a frame of {length} bytes"
                    )
                if end - position - 9 < length:
                    break
                start = position + 9
                payload = bytes(buffer[start : start + length])
                position = start + length
                stream_id &= MAX_STREAM_ID

                if self._continued is not None and kind != FrameType.CONTINUATION:
                    raise FramingError(
                        ErrorCode.PROTOCOL_ERROR, "a header block left unfinished"
                    )
                if kind == FrameType.HEADERS:
                    self._headers(stream_id, flags, payload)
                elif kind == FrameType.DATA:
                    if stream_id == 0:
                        raise FramingError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0")
                    handler.on_data(
                        stream_id,
                        _unpadded(flags, payload),
                        length,
                        bool(flags & Flag.END_STREAM),
                    )
                elif kind == FrameType.WINDOW_UPDATE:
                    self._window_update(stream_id, payload)
                elif kind == FrameType.SETTINGS:
                    self._settings(stream_id, flags, payload)
                elif kind == FrameType.PING:
                    if stream_id != 0 or length != 8:
                        raise FramingError(ErrorCode.PROTOCOL_ERROR, "a bad PING")
                    handler.on_ping(payload, bool(flags & Flag.ACK))
                elif kind == FrameType.RST_STREAM:
                    if stream_id == 0 or length != 4:
                        raise FramingError(ErrorCode.PROTOCOL_ERROR, "a bad RST_STREAM")
                    handler.on_rst_stream(stream_id, struct.unpack(">L", payload)[0])
                elif kind == FrameType.GOAWAY:
                    if stream_id != 0 or length < 8:
                        raise FramingError(ErrorCode.PROTOCOL_ERROR, "a bad GOAWAY")
                    last, code = struct.unpack_from(">LL", payload)
                    handler.on_goaway(last & MAX_STREAM_ID, code, payload[8:])
                elif kind == FrameType.CONTINUATION:
                    self._continuation(stream_id, flags, payload)
                elif kind == FrameType.PUSH_PROMISE:
                    raise FramingError(
                        ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE, push is disabled"
                    )
                # PRIORITY and unknown types carry nothing for us [RFC 9113 5.5].
        finally:
            del buffer[:position]

    def _headers(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id == 0:
            raise FramingError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0")
        fragment = _unpadded(flags, payload)
        if flags & Flag.PRIORITY:
            fragment = fragment[5:]
        end_stream = bool(flags & Flag.END_STREAM)
        if flags & Flag.END_HEADERS:
            self._handler.on_headers(stream_id, self._decode(fragment), end_stream)
        else:
            self._continued = (stream_id, [fragment], end_stream)

    def _continuation(self, stream_id: int, flags: int, payload: bytes) -> None:
        if self._continued is None or self._continued[0] != stream_id:
            raise FramingError(ErrorCode.PROTOCOL_ERROR, "a stray CONTINUATION")
        _, fragments, end_stream = self._continued
        fragments.append(payload)
        if flags & Flag.END_HEADERS:
            self._continued = None
            block = b"".join(fragments)
            self._handler.on_headers(stream_id, self._decode(block), end_stream)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return self.decoder.decode(block)
        except (HPACKError, IndexError) as exc:
            raise FramingError(ErrorCode.COMPRESSION_ERROR, str(exc)) from exc

    def _window_update(self, stream_id: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise FramingError(ErrorCode.FRAME_SIZE_ERROR, "a bad WINDOW_UPDATE")
        increment = struct.unpack(">L", payload)[0] & MAX_WINDOW
        if increment == 0 and stream_id == 0:
            raise FramingError(ErrorCode.PROTOCOL_ERROR, "a window update of 0")
        self._handler.on_window_update(stream_id, increment)

    def _settings(self, stream_id: int, flags: int, payload: bytes) -> None:
        if stream_id != 0:
            raise FramingError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & Flag.ACK:
            if payload:
                raise FramingError(
                    ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK with data"
                )
            return
        if len(payload) % 6:
            raise FramingError(ErrorCode.FRAME_SIZE_ERROR, "a bad SETTINGS frame")
        values = [
            struct.unpack_from(">HL", payload, offset)
            for offset in range(0, len(payload), 6)
        ]
        self._handler.on_settings(values)


def _unpadded(flags: int, payload: bytes) -> bytes:
    if not flags & Flag.PADDED:
        return payload
    if not payload or payload[0] >= len(payload):
        raise FramingError(ErrorCode.PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]
