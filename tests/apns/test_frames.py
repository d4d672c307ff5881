"""Reading HTTP/2 frames: each kind reaches its handler method whole, however the
network cuts the bytes, and a peer that breaks the framing rules is named."""

from __future__ import annotations

import struct

import hpack
import pytest

from connector.apns.frames import (
    ErrorCode,
    Flag,
    FrameReader,
    FrameType,
    FramingError,
    Setting,
    frame,
    goaway_frame,
    ping_frame,
    rst_stream_frame,
    settings_frame,
    window_update_frame,
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_headers(self, stream_id: int, headers: object, end_stream: bool) -> None:
        self.calls.append(("headers", stream_id, headers, end_stream))

    def on_data(
        self, stream_id: int, data: bytes, flow_controlled: int, end_stream: bool
    ) -> None:
        self.calls.append(("data", stream_id, data, flow_controlled, end_stream))

    def on_rst_stream(self, stream_id: int, code: int) -> None:
        self.calls.append(("rst", stream_id, code))

    def on_settings(self, values: list[tuple[int, int]]) -> None:
        self.calls.append(("settings", values))

    def on_ping(self, opaque: bytes, ack: bool) -> None:
        self.calls.append(("ping", opaque, ack))

    def on_goaway(self, last_stream_id: int, code: int, debug: bytes) -> None:
        self.calls.append(("goaway", last_stream_id, code, debug))

    def on_window_update(self, stream_id: int, increment: int) -> None:
        self.calls.append(("window", stream_id, increment))


ANSWER = [(b":status", b"200"), (b"apns-id", b"6cd4e923-a264-5761-bf66-19ca18370e89")]


def test_every_frame_kind_arrives_whole_even_byte_by_byte() -> None:
    block = hpack.Encoder().encode(ANSWER)
    wire = b"".join(
        [
            settings_frame({Setting.MAX_CONCURRENT_STREAMS: 1000}),
            frame(FrameType.HEADERS, 0, 1, block[:5]),
            frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, block[5:]),
            frame(
                FrameType.DATA,
                Flag.PADDED | Flag.END_STREAM,
                1,
                b"\x03{}" + b"\x00" * 3,
            ),
            frame(FrameType.PRIORITY, 0, 3, b"\x00" * 5),
            ping_frame(b"12345678"),
            ping_frame(b"abcdefgh", ack=True),
            window_update_frame(0, 1000),
            rst_stream_frame(5, ErrorCode.REFUSED_STREAM),
            goaway_frame(7, ErrorCode.NO_ERROR, b'{"reason":"Shutdown"}'),
        ]
    )
    recorder = Recorder()
    reader = FrameReader(recorder)

    for offset in range(len(wire)):
        reader.feed(wire[offset : offset + 1])

    assert recorder.calls == [
        ("settings", [(Setting.MAX_CONCURRENT_STREAMS, 1000)]),
        ("headers", 1, ANSWER, False),
        ("data", 1, b"{}", 6, True),
        ("ping", b"12345678", False),
        ("ping", b"abcdefgh", True),
        ("window", 0, 1000),
        ("rst", 5, ErrorCode.REFUSED_STREAM),
        ("goaway", 7, ErrorCode.NO_ERROR, b'{"reason":"Shutdown"}'),
    ]


@pytest.mark.parametrize(
    ("wire", "code", "problem"),
    [
        (
            frame(FrameType.PUSH_PROMISE, 0, 1, b"\x00" * 4),
            ErrorCode.PROTOCOL_ERROR,
            "PUSH_PROMISE",
        ),
        (
            frame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, b""),
            ErrorCode.PROTOCOL_ERROR,
            "stray CONTINUATION",
        ),
        (
            struct.pack(">BHBBL", 0, 20000, 0, 0, 1),
            ErrorCode.FRAME_SIZE_ERROR,
            "20000 bytes",
        ),
        (
            frame(FrameType.DATA, Flag.PADDED, 1, b"\x09abc"),
            ErrorCode.PROTOCOL_ERROR,
            "padding",
        ),
        (
            frame(FrameType.HEADERS, Flag.END_HEADERS, 1, b"\xbf\x10"),
            ErrorCode.COMPRESSION_ERROR,
            "in no table",
        ),
        (
            frame(FrameType.SETTINGS, 0, 0, b"\x00\x03\x00"),
            ErrorCode.FRAME_SIZE_ERROR,
            "SETTINGS",
        ),
        (
            frame(FrameType.HEADERS, 0, 1, b"") + ping_frame(b"12345678"),
            ErrorCode.PROTOCOL_ERROR,
            "unfinished",
        ),
    ],
)
def test_a_peer_breaking_the_rules_is_named(
    wire: bytes, code: ErrorCode, problem: str
) -> None:
    with pytest.raises(FramingError, match=problem) as raised:
        FrameReader(Recorder()).feed(wire)
    assert raised.value.code == code
