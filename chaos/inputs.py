"""Generated bad request records: every one must get exactly one rejected outcome.

A seeded generator mixes hand-picked shapes of bad input (wrong types, nulls,
invalid UTF-8, truncation, a record of a megabyte) with random mutations of valid
requests and raw random bytes. Each record is keyed by its own id; a mutation that
happens to stay a deliverable request, or that changes its id, is drawn again, so that
"rejected" is the one right answer for every record.
"""

from __future__ import annotations

import random

from connector.apns.notification import LocalRejection, prepare
from connector.errors import DecodeError
from connector.events import NotificationRequest, decode_request, encoder

BUNDLE_ID = "com.example.demo"
MEGABYTE_RECORDS = 3
MEGABYTE = 1_000_000

# Shapes of bad input, each a function of the record's key.
_SHAPES = (
    lambda key: b'{"id": ' + key.encode() + b"}",  # not JSON: unquoted string
    lambda key: f'{{"id": 7, "device_token": "ab", "topic": "{BUNDLE_ID}"}}'.encode(),
    lambda key: f'{{"id": "{key}", "device_token": ["ab"], "topic": "t"}}'.encode(),
    lambda key: f'{{"id": "{key}", "device_token": "ab", "topic": null}}'.encode(),
    lambda key: (
        f'{{"id": "{key}", "device_token": "ab", "topic": "t", '
        '"aps": "alert"}'.encode()
    ),
    lambda key: (
        f'{{"id": "{key}", "device_token": "ab", "topic": "t", '
        '"priority": "high"}'.encode()
    ),
    lambda key: (
        f'{{"id": "{key}", "device_token": "ab", "topic": "t", '
        '"push_type": "fax"}'.encode()
    ),
    lambda key: b'{"id": "' + key.encode() + b'", "device_token": "\xff\xfe"}',
    lambda key: b"null",
    lambda key: b"",
    lambda key: b"[" * 10_000 + b"]" * 10_000,
    lambda key: f'{{"id": "{key}", "device_token": "\\ud800", "topic": "t"}}'.encode(),
    lambda key: (
        f'{{"id": "{key}", "device_token": "zz", "topic": "{BUNDLE_ID}"}}'.encode()
    ),
    lambda key: (
        f'{{"id": "{key}", "device_token": "ab", "topic": "{BUNDLE_ID}", '
        '"expiration": 1.5}'.encode()
    ),
)


def bad_inputs(count: int, seed: int) -> list[tuple[str, bytes | None]]:
    """`count` (key, value) records, each of which must be rejected."""
    rng = random.Random(seed)
    records: list[tuple[str, bytes | None]] = []
    for number in range(count):
        key = f"bad-{seed}-{number}"
        records.append((key, _one(key, number, rng)))
    return records


def _one(key: str, number: int, rng: random.Random) -> bytes | None:
    if number < MEGABYTE_RECORDS:
        return _megabyte(key, number)
    if number % 50 == MEGABYTE_RECORDS:
        # A tombstone: a record with no value at all.
        return None

    draw = rng.random()
    if draw < 0.4:
        return _SHAPES[number % len(_SHAPES)](key)
    if draw < 0.6:
        return rng.randbytes(rng.randrange(0, 2000))
    while True:
        candidate = _mutated(key, rng)
        if _must_be_rejected(candidate, key):
            return candidate


def _megabyte(key: str, number: int) -> bytes:
    if number == 0:
        # Decodable, but its payload is far over Apple's limit.
        request = NotificationRequest(
            id=key,
            device_token="ab" * 32,
            topic=BUNDLE_ID,
            aps={"alert": "x" * MEGABYTE},
        )
        return encoder.encode(request)
    if number == 1:
        return b'{"id": "' + key.encode() + b'", "device_token": "' + b"a" * MEGABYTE
    return random.Random(number).randbytes(MEGABYTE)


def _mutated(key: str, rng: random.Random) -> bytes:
    value = bytearray(
        encoder.encode(
            NotificationRequest(
                id=key,
                device_token=rng.randbytes(32).hex(),
                topic=BUNDLE_ID,
                aps={"alert": {"title": "t", "body": "b"}, "badge": 1},
            )
        )
    )
    how = rng.randrange(3)
    if how == 0:
        return bytes(value[: rng.randrange(len(value))])
    if how == 1:
        for _ in range(rng.randrange(1, 5)):
            value[rng.randrange(len(value))] = rng.randrange(256)
        return bytes(value)
    position = rng.randrange(len(value))
    return bytes(
        value[:position] + rng.randbytes(rng.randrange(1, 20)) + value[position:]
    )


def _must_be_rejected(value: bytes, key: str) -> bool:
    try:
        request = decode_request(value)
    except DecodeError:
        return True
    if request.id != key:
        return False
    return request.topic != BUNDLE_ID or isinstance(prepare(request), LocalRejection)
