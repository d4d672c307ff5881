"""Events of an earlier shape, and of a later one, decode with today's types.

`tests/event_shapes/v1/` holds records as the first release wrote them and the JSON
Schemas of its types. Producers and consumers are upgraded one at a time, so:
records of the previous shape decode (new fields take their defaults), records of a
newer shape decode (unknown fields are ignored), no field becomes required, and no
field changes its type in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from connector import schemas
from connector.apns.push_types import PushType
from connector.events import (
    SCHEMA_VERSION,
    DeadLetter,
    InvalidToken,
    NotificationRequest,
    Outcome,
    Status,
    decode_request,
)

V1 = Path(__file__).parent / "event_shapes" / "v1"
TOKEN = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad"

# Keys that document a schema without changing what it accepts.
_ANNOTATIONS = {"title", "description", "default", "examples"}


def record(name: str) -> bytes:
    return (V1 / f"{name}.json").read_bytes()


def v1_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((V1 / f"{name}.schema.json").read_text())
    return schema


def shape(node: Any) -> Any:
    """A schema without its annotations: what it accepts, nothing else."""
    if isinstance(node, list):
        return [shape(item) for item in node]
    if isinstance(node, dict):
        return {k: shape(v) for k, v in node.items() if k not in _ANNOTATIONS}
    return node


def test_a_request_of_the_previous_shape_decodes() -> None:
    request = decode_request(record("notification-request"))

    assert request == NotificationRequest(
        id="order-4711-shipped",
        device_token=TOKEN,
        topic="com.example.shop",
        push_type=PushType.ALERT,
        priority=10,
        expiration=1767225600,
        collapse_id="order-4711",
        aps={
            "alert": {"title": "Shipped", "body": "Your order is on its way"},
            "badge": 1,
        },
        data={"order": 4711},
    )
    # Fields added since take their defaults.
    assert (request.alert, request.badge, request.sound, request.v) == (
        None,
        None,
        None,
        1,
    )


def test_a_request_of_the_current_shape_decodes() -> None:
    current = msgspec.json.encode(
        {
            "id": "order-4711-shipped",
            "device_token": TOKEN,
            "topic": "com.example.shop",
            "alert": {"title": "Shipped", "body": "Your order is on its way"},
            "badge": 1,
            "thread_id": "orders",
            "data": {"order": 4711},
            "v": SCHEMA_VERSION,
        }
    )

    request = decode_request(current)

    assert (request.id, request.badge, request.thread_id, request.aps) == (
        "order-4711-shipped",
        1,
        "orders",
        {},
    )
    assert request.alert is not None and not isinstance(request.alert, str)
    assert (request.alert.title, request.alert.body) == (
        "Shipped",
        "Your order is on its way",
    )


def test_a_request_of_a_newer_shape_decodes_without_its_unknown_fields() -> None:
    newer = json.loads(record("notification-request"))
    newer.update({"v": SCHEMA_VERSION + 1, "field_of_a_newer_version": {"x": [1]}})

    request = decode_request(msgspec.json.encode(newer))

    assert request.v == SCHEMA_VERSION + 1
    assert msgspec.structs.replace(request, v=SCHEMA_VERSION) == decode_request(
        record("notification-request")
    )


def test_outcomes_invalid_tokens_and_dead_letters_of_the_previous_shape_decode() -> (
    None
):
    outcome = msgspec.json.decode(record("outcome"), type=Outcome)
    invalid = msgspec.json.decode(record("invalid-token"), type=InvalidToken)
    dead = msgspec.json.decode(record("dead-letter"), type=DeadLetter)

    assert (outcome.request_id, outcome.status, outcome.reason, outcome.offset) == (
        "order-4711-shipped",
        Status.REJECTED,
        "BadDeviceToken",
        1041,
    )
    assert outcome.timings.completed_ms == 1767225500058
    assert (invalid.device_token, invalid.reason, invalid.found_locally) == (
        TOKEN,
        "BadDeviceToken",
        False,
    )
    assert (dead.key, dead.value, dead.headers) == (
        b"broken",
        b"\xff{not json",
        [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")],
    )


@pytest.mark.parametrize("name", list(schemas.EVENTS))
def test_no_field_became_required(name: str) -> None:
    before, now = v1_schema(name), schemas.schema(schemas.EVENTS[name])

    added = set(now["required"]) - set(before["required"])

    assert added == set(), f"{name}: new fields need defaults: {sorted(added)}"


@pytest.mark.parametrize("name", list(schemas.EVENTS))
def test_no_field_changed_its_type(name: str) -> None:
    before, now = v1_schema(name), schemas.schema(schemas.EVENTS[name])

    changed = [
        field
        for field, schema in before["properties"].items()
        if shape(now["properties"].get(field)) != shape(schema)
    ]

    assert changed == [], f"{name}: fields changed or removed: {changed}"


@pytest.mark.parametrize("name", list(schemas.EVENTS))
def test_no_enum_value_was_removed(name: str) -> None:
    before, now = v1_schema(name), schemas.schema(schemas.EVENTS[name])

    for definition, schema in before.get("definitions", {}).items():
        if "enum" in schema:
            kept = set(now["definitions"][definition]["enum"])
            assert set(schema["enum"]) <= kept, f"{name}: {definition}"


@pytest.mark.parametrize("event", list(schemas.EVENTS.values()))
def test_every_event_carries_the_schema_version(event: type[msgspec.Struct]) -> None:
    fields = {field.name: field for field in msgspec.structs.fields(event)}

    assert fields["v"].type is int
    assert fields["v"].default == SCHEMA_VERSION
