"""The body Apple receives: every key, from typed fields or a ready `aps`, checked."""

from typing import Any

import msgspec
import pytest

from connector.apns.payload import (
    APS_FIELDS,
    PayloadProblem,
    apple_key,
    build_aps,
    encode_body,
)
from connector.apns.push_types import PushType
from connector.errors import DecodeError
from connector.events import NotificationRequest, decode_request

BASE: dict[str, Any] = {"id": "r", "device_token": "ab" * 32, "topic": "com.x"}


def typed(push_type: PushType = PushType.ALERT, **fields: Any) -> NotificationRequest:
    """A request with typed fields, decoded from JSON as a producer would send it."""
    record = {**BASE, "push_type": push_type.value, **fields}
    return decode_request(msgspec.json.encode(record))


def body(request: NotificationRequest) -> bytes | PayloadProblem:
    aps = build_aps(request, request.aps, request.push_type)
    if isinstance(aps, PayloadProblem):
        return aps
    return encode_body(aps, request.data)


# Each push type's typical payload, typed and in Apple's spelling, in Apple's order.
SAME_PAYLOADS = [
    (
        PushType.ALERT,
        {
            "alert": {
                "title": "Shipped",
                "subtitle": "Order 4711",
                "body": "On its way",
                "launch-image": "truck.png",
                "title-loc-key": "T",
                "title-loc-args": ["a"],
                "subtitle-loc-key": "S",
                "subtitle-loc-args": ["b"],
                "loc-key": "B",
                "loc-args": ["c", "d"],
            },
            "badge": 3,
            "sound": "chime.caf",
            "thread_id": "orders",
            "category": "ORDER",
            "mutable_content": 1,
            "target_content_id": "order-4711",
            "interruption_level": "time-sensitive",
            "relevance_score": 0.75,
            "filter_criteria": "work",
            "url_args": ["orders", "4711"],
        },
    ),
    (
        PushType.ALERT,
        {
            "alert": "Wake up",
            "sound": {"critical": 1, "name": "alarm.caf", "volume": 1},
            "interruption_level": "critical",
        },
    ),
    (PushType.BACKGROUND, {"content_available": 1}),
    (PushType.VOIP, {"alert": "Call from Ann"}),
    (
        PushType.LIVEACTIVITY,
        {
            "alert": {"title": "Game on"},
            "relevance_score": 75,
            "timestamp": 1_767_225_600,
            "event": "start",
            "content_state": {"home": 0, "away": 0},
            "stale_date": 1_767_229_200,
            "attributes_type": "MatchAttributes",
            "attributes": {"match": "A-B"},
        },
    ),
    (
        PushType.LIVEACTIVITY,
        {
            "timestamp": 1_767_225_900,
            "event": "update",
            "content_state": {"home": 1, "away": 0},
        },
    ),
    (
        PushType.LIVEACTIVITY,
        {"timestamp": 1_767_232_000, "event": "end", "dismissal_date": 1_767_235_600},
    ),
    (PushType.WIDGETS, {"content_changed": True}),
    (PushType.CONTROLS, {"content_changed": True}),
]


@pytest.mark.parametrize(("push_type", "fields"), SAME_PAYLOADS)
def test_typed_fields_and_a_ready_aps_give_the_same_bytes(
    push_type: PushType, fields: dict[str, Any]
) -> None:
    ready = {apple_key(name): value for name, value in fields.items()}

    from_typed = body(typed(push_type, **fields))
    from_ready = body(typed(push_type, aps=ready))

    assert from_typed == from_ready == msgspec.json.encode({"aps": ready})


def test_only_the_keys_set_are_sent() -> None:
    request = typed(alert={"title": "Hi"}, badge=0)
    assert body(request) == b'{"aps":{"alert":{"title":"Hi"},"badge":0}}'


def test_every_typed_field_has_its_apple_key() -> None:
    assert [apple_key(field) for field in APS_FIELDS] == [
        "alert",
        "badge",
        "sound",
        "thread-id",
        "category",
        "content-available",
        "mutable-content",
        "target-content-id",
        "interruption-level",
        "relevance-score",
        "filter-criteria",
        "url-args",
        "timestamp",
        "event",
        "content-state",
        "stale-date",
        "dismissal-date",
        "attributes-type",
        "attributes",
        "content-changed",
    ]


def test_custom_data_sits_beside_aps_and_non_ascii_goes_raw() -> None:
    request = typed(alert="Grüße 👋", data={"order": 4711, "note": "é"})
    assert (
        body(request) == '{"order":4711,"note":"é","aps":{"alert":"Grüße 👋"}}'.encode()
    )


def test_an_empty_aps_is_left_out_only_when_custom_data_carries_the_payload() -> None:
    assert body(typed(PushType.MDM, data={"mdm": "magic"})) == b'{"mdm":"magic"}'
    assert body(typed(PushType.LOCATION)) == b'{"aps":{}}'


def test_keys_apple_adds_later_pass_through_a_ready_aps() -> None:
    ready = {"alert": {"title": "Hi", "summary-arg": "Ann"}, "new-key": [1]}
    assert body(typed(aps=ready)) == msgspec.json.encode({"aps": ready})


@pytest.mark.parametrize(
    ("push_type", "fields", "detail"),
    [
        (
            PushType.ALERT,
            {"alert": "Hi", "aps": {"badge": 1}},
            (
                "aps: give either the aps dictionary or typed fields "
                "(alert, badge, sound, ...), not both"
            ),
        ),
        (
            PushType.ALERT,
            {"aps": {"badge": "one"}},
            "aps.badge: Expected `int | null`, got `str`",
        ),
        (
            PushType.ALERT,
            {"aps": {"thread-id": 7}},
            "aps.thread-id: Expected `str | null`, got `int`",
        ),
        (
            PushType.ALERT,
            {"aps": {"alert": {"title-loc-args": "x"}}},
            "aps.alert.title-loc-args: Expected `array | null`, got `str`",
        ),
        (
            PushType.ALERT,
            {"aps": {"interruption-level": "loud"}},
            "aps.interruption-level: Invalid enum value 'loud'",
        ),
        (
            PushType.ALERT,
            {"data": {"aps": {}}, "alert": "Hi"},
            "data.aps: the aps dictionary goes in aps or in the typed fields",
        ),
        (
            PushType.ALERT,
            {"relevance_score": 1.5},
            "relevance_score: must be 0 to 1",
        ),
        (
            PushType.ALERT,
            {"aps": {"sound": {"critical": 1, "volume": 2}}},
            "aps.sound.volume: must be 0 to 1",
        ),
        (
            PushType.BACKGROUND,
            {"content_available": 1, "badge": 1},
            "badge: not allowed in a background push",
        ),
        (
            PushType.BACKGROUND,
            {"aps": {"alert": "Hi", "content-available": 1}},
            "aps.alert: not allowed in a background push",
        ),
        (
            PushType.BACKGROUND,
            {},
            "content_available: a background push needs 1",
        ),
        (
            PushType.LIVEACTIVITY,
            {"event": "update", "content_state": {}},
            "timestamp: required in a liveactivity push",
        ),
        (
            PushType.LIVEACTIVITY,
            {"aps": {"timestamp": 1}},
            "aps.event: required in a liveactivity push",
        ),
        (
            PushType.LIVEACTIVITY,
            {"timestamp": 1, "event": "start", "content_state": {}, "attributes": {}},
            "attributes_type: required when the event is start",
        ),
        (
            PushType.LIVEACTIVITY,
            {"timestamp": 1, "event": "update"},
            "content_state: required when the event is update",
        ),
        (
            PushType.LIVEACTIVITY,
            {"timestamp": 1, "event": "end", "attributes_type": "A"},
            "attributes_type: only when the event is start",
        ),
        (
            PushType.ALERT,
            {"alert": "Hi", "content_state": {}},
            "content_state: only for liveactivity pushes",
        ),
        (
            PushType.WIDGETS,
            {"aps": {"content-changed": False}},
            "aps.content-changed: a widgets push needs true",
        ),
        (
            PushType.ALERT,
            {"content_changed": True},
            "content_changed: only for widgets and controls pushes",
        ),
    ],
)
def test_a_payload_breaking_a_rule_is_refused_naming_the_key(
    push_type: PushType, fields: dict[str, Any], detail: str
) -> None:
    assert body(typed(push_type, **fields)) == PayloadProblem(detail)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"badge": -1},
            "invalid request: Expected `int` >= 0 - at `$.badge`",
        ),
        (
            {"interruption_level": "loud"},
            "invalid request: Invalid enum value 'loud' - at `$.interruption_level`",
        ),
        (
            {"sound": {"critical": 2}},
            "invalid request: Expected `int` <= 1 - at `$.sound.critical`",
        ),
        (
            {"event": "pause"},
            "invalid request: Invalid enum value 'pause' - at `$.event`",
        ),
    ],
)
def test_a_typed_field_of_the_wrong_type_fails_decoding_naming_it(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode_request(msgspec.json.encode({**BASE, **fields}))
    assert str(raised.value) == message
