"""Our HPACK coder against hpack's: what one writes, the other reads exactly."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import HPACKDecodingError

from connector.apns.header_block import (
    RequestHeaderEncoder,
    ResponseHeaderDecoder,
    integer,
)

TOKEN = b"bearer " + b"e" * 240


def request(number: int, token: bytes = TOKEN) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"api.push.apple.com"),
        (b":path", b"/3/device/" + f"{number:064x}".encode()),
        (b"authorization", token),
        (b"apns-push-type", b"alert"),
        (b"apns-topic", b"com.example.shop"),
        (b"apns-id", f"{number:08x}-0000-4000-8000-000000000000".encode()),
    ]


def test_requests_decode_exactly_and_the_token_crosses_once() -> None:
    encoder, peer = RequestHeaderEncoder(), hpack.Decoder()
    sizes = []
    for number in range(5):
        block = encoder.encode(request(number))
        sizes.append(len(block))
        assert peer.decode(block, raw=True) == request(number)

    # The token goes whole once, then as one byte.
    assert sizes[0] - sizes[1] == len(TOKEN) + 2
    assert len(set(sizes[1:])) == 1


def test_a_new_token_is_added_and_both_stay_decodable() -> None:
    encoder, peer = RequestHeaderEncoder(), hpack.Decoder()
    newer = b"bearer " + b"f" * 240
    for number, token in enumerate([TOKEN, newer, TOKEN, newer]):
        assert peer.decode(encoder.encode(request(number, token)), raw=True) == (
            request(number, token)
        )


@pytest.mark.parametrize("table_size", [0, 100, 2048])
def test_a_smaller_table_is_announced_and_kept_to(table_size: int) -> None:
    encoder, peer = RequestHeaderEncoder(), hpack.Decoder()
    peer.decode(encoder.encode(request(0)), raw=True)

    encoder.header_table_size = table_size
    peer.max_allowed_table_size = table_size
    block = encoder.encode(request(1))

    assert block.startswith(integer(table_size, 5, 0x20))
    assert peer.decode(block, raw=True) == request(1)
    assert peer.decode(encoder.encode(request(2)), raw=True) == request(2)


def test_answers_from_a_general_encoder_decode_exactly() -> None:
    peer, decoder = hpack.Encoder(), ResponseHeaderDecoder()
    for number in range(50):
        headers = [
            (b":status", b"200" if number % 3 else b"410"),
            (b"apns-id", f"{number:08x}-0000-4000-8000-000000000000".encode()),
            (b"date", b"Thu, 03 Dec 2026 19:00:00 GMT"),
            (b"server", b"nginx"),
            (b"content-length", str(number).encode()),
        ]
        block = peer.encode(headers, huffman=number % 2 == 0)
        assert decoder.decode(block) == headers


def test_a_table_size_update_evicts_and_is_bounded() -> None:
    peer, decoder = hpack.Encoder(), ResponseHeaderDecoder()
    decoder.decode(peer.encode([(b"x-long", b"v" * 100)]))
    peer.header_table_size = 64
    headers = [(b"x-long", b"w" * 10)]
    assert decoder.decode(peer.encode(headers)) == headers
    assert decoder.header_table_size == 64

    with pytest.raises(HPACKDecodingError, match="above the maximum"):
        decoder.decode(integer(8192, 5, 0x20))


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        (b"\xff", "ends inside an integer"),
        (b"\x00\x05ab", "ends inside a string"),
        (b"\xbf\x10", "in no table"),
        (b"\xff\xff\xff\xff\xff\xff\xff", "integer too long"),
    ],
)
def test_broken_blocks_are_refused(block: bytes, problem: str) -> None:
    with pytest.raises(HPACKDecodingError, match=problem):
        ResponseHeaderDecoder().decode(block)
