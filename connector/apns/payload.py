"""The JSON body sent to Apple: the `aps` dictionary, and custom keys beside it.

A request gives `aps` in one of two forms. Either typed fields (`alert`, `badge`,
`sound`, `thread_id`, ...; the `ApsFields` below, which every request has), or a ready
`aps` dictionary in Apple's own spelling, sent as it is. Both give the same bytes: the
key Apple reads for a typed field is the field's name with hyphens for underscores,
keys follow the order of `ApsFields`, and a field is sent only when it is set. The
`alert` and `sound` dictionaries use Apple's spelling in both forms.

Either form is checked before anything is sent: types, ranges, and whether the keys
fit the push type (a background push carries `content-available` and nothing that
interrupts the user; a Live Activity push says its `event` and `timestamp`; ...).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec

from connector.apns.push_types import (
    APS,
    InterruptionLevel,
    LiveActivityEvent,
    PushType,
)

NonNegative = Annotated[int, msgspec.Meta(ge=0)]
# Apple's flags are the number 1 (0 is allowed and means the same as absent).
Flag = Annotated[int, msgspec.Meta(ge=0, le=1)]


class Alert(
    msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="kebab"
):
    """The `alert` dictionary: shown text, or keys into the app's localised strings."""

    title: str | None = None
    subtitle: str | None = None
    body: str | None = None
    launch_image: str | None = None
    title_loc_key: str | None = None
    title_loc_args: list[str] | None = None
    subtitle_loc_key: str | None = None
    subtitle_loc_args: list[str] | None = None
    loc_key: str | None = None
    loc_args: list[str] | None = None


class Sound(
    msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, rename="kebab"
):
    """The `sound` dictionary of a critical alert."""

    critical: Flag | None = None
    name: str | None = None
    # 0 (silent) to 1 (full volume).
    volume: int | float | None = None


class ApsFields(msgspec.Struct, kw_only=True, frozen=True):
    """The `aps` dictionary as typed fields; every `NotificationRequest` has them."""

    alert: str | Alert | None = None
    badge: NonNegative | None = None
    sound: str | Sound | None = None
    thread_id: str | None = None
    category: str | None = None
    content_available: Flag | None = None
    mutable_content: Flag | None = None
    target_content_id: str | None = None
    interruption_level: InterruptionLevel | None = None
    # 0 to 1 for notifications; Live Activities accept larger values.
    relevance_score: int | float | None = None
    filter_criteria: str | None = None
    url_args: list[str] | None = None
    # Live Activities: UNIX seconds of the update, what happens, the new state.
    timestamp: NonNegative | None = None
    event: LiveActivityEvent | None = None
    content_state: dict[str, Any] | None = None
    stale_date: NonNegative | None = None
    dismissal_date: NonNegative | None = None
    # Push-to-start: the activity's attributes type and values.
    attributes_type: str | None = None
    attributes: dict[str, Any] | None = None
    # Widgets: their timeline should be reloaded.
    content_changed: bool | None = None


APS_FIELDS: tuple[str, ...] = ApsFields.__struct_fields__
_aps_values = operator.attrgetter(*APS_FIELDS)
_LIVE_ACTIVITY_FIELDS = (
    "timestamp",
    "event",
    "content_state",
    "stale_date",
    "dismissal_date",
    "attributes_type",
    "attributes",
)
_REQUIRED_BY_EVENT: dict[LiveActivityEvent, tuple[str, ...]] = {
    LiveActivityEvent.START: ("attributes_type", "attributes", "content_state"),
    LiveActivityEvent.UPDATE: ("content_state",),
    LiveActivityEvent.END: (),
}
_INTERRUPTING_FIELDS = ("alert", "badge", "sound")
_CONTENT_CHANGED_PUSH_TYPES = frozenset({PushType.WIDGETS, PushType.CONTROLS})
_encoder = msgspec.json.Encoder()


def apple_key(field: str) -> str:
    """The key Apple reads for a typed field: `thread_id` is `thread-id`."""
    return field.replace("_", "-")


_FIELD_OF_KEY = {apple_key(field): field for field in APS_FIELDS}


@dataclass(frozen=True, slots=True)
class PayloadProblem:
    """Why a payload cannot be sent: the field and the rule."""

    detail: str


def has_typed_fields(fields: ApsFields) -> bool:
    return _aps_values(fields).count(None) != len(APS_FIELDS)


def build_aps(
    fields: ApsFields, ready: dict[str, Any], push_type: PushType
) -> dict[str, Any] | PayloadProblem:
    """The checked `aps` dictionary from a request's typed fields or ready `aps`."""
    if not ready:
        problem = _problem(fields, push_type, _typed_name)
        if problem is not None:
            return PayloadProblem(problem)
        return {
            apple_key(field): msgspec.to_builtins(getattr(fields, field))
            for field in APS_FIELDS
            if getattr(fields, field) is not None
        }

    if has_typed_fields(fields):
        return PayloadProblem(
            "aps: give either the aps dictionary or typed fields "
            "(alert, badge, sound, ...), not both"
        )
    try:
        typed = _read_ready(ready)
    except msgspec.ValidationError as exc:
        return PayloadProblem(_ready_problem(exc))
    problem = _problem(typed, push_type, _ready_name)
    if problem is not None:
        return PayloadProblem(problem)
    return ready


def encode_body(aps: dict[str, Any], data: dict[str, Any]) -> bytes | PayloadProblem:
    """The exact body: custom keys, then `aps`, as UTF-8 JSON with no `\\u` escapes.

    An empty `aps` is left out when custom keys carry the payload (an MDM push is only
    `{"mdm": ...}`); a body is never the empty object.
    """
    if APS in data:
        return PayloadProblem(
            "data.aps: the aps dictionary goes in aps or in the typed fields"
        )
    payload = dict(data)
    if aps or not data:
        payload[APS] = aps
    return _encoder.encode(payload)


def _read_ready(ready: dict[str, Any]) -> ApsFields:
    """The typed view of a ready dictionary; keys Apple adds later pass unread."""
    known = {
        _FIELD_OF_KEY[key]: value
        for key, value in ready.items()
        if key in _FIELD_OF_KEY
    }
    return msgspec.convert(known, ApsFields)


def _ready_problem(exc: msgspec.ValidationError) -> str:
    # msgspec ends with "- at `$.thread_id`": name the key as the producer spelled it.
    problem, found, where = str(exc).rpartition(" - at `$.")
    if not found:
        return f"aps: {exc}"
    field, dot, rest = where.rstrip("`").partition(".")
    return f"{_ready_name(field)}{dot}{rest}: {problem}"


def _typed_name(field: str) -> str:
    return field


def _ready_name(field: str) -> str:
    return f"aps.{apple_key(field)}"


def _problem(
    fields: ApsFields, push_type: PushType, name: Callable[[str], str]
) -> str | None:
    """What in the keys does not fit the other keys or the push type, if anything."""
    if push_type is not PushType.LIVEACTIVITY and _outside_0_1(fields.relevance_score):
        return f"{name('relevance_score')}: must be 0 to 1"
    if isinstance(fields.sound, Sound) and _outside_0_1(fields.sound.volume):
        return f"{name('sound')}.volume: must be 0 to 1"

    if push_type is PushType.BACKGROUND:
        # Apple wakes the app only for content-available, and a background push
        # must not interrupt the user.
        for field in _INTERRUPTING_FIELDS:
            if getattr(fields, field) is not None:
                return f"{name(field)}: not allowed in a background push"
        if fields.content_available != 1:
            return f"{name('content_available')}: a background push needs 1"

    if push_type is PushType.LIVEACTIVITY:
        problem = _live_activity_problem(fields, name)
        if problem is not None:
            return problem
    else:
        for field in _LIVE_ACTIVITY_FIELDS:
            if getattr(fields, field) is not None:
                return f"{name(field)}: only for liveactivity pushes"

    changed = fields.content_changed
    if push_type is PushType.WIDGETS and changed is not True:
        return f"{name('content_changed')}: a widgets push needs true"
    if changed is not None and push_type not in _CONTENT_CHANGED_PUSH_TYPES:
        return f"{name('content_changed')}: only for widgets and controls pushes"
    return None


def _live_activity_problem(fields: ApsFields, name: Callable[[str], str]) -> str | None:
    for field in ("timestamp", "event"):
        if getattr(fields, field) is None:
            return f"{name(field)}: required in a liveactivity push"

    event = fields.event
    assert event is not None
    for field in _REQUIRED_BY_EVENT[event]:
        if getattr(fields, field) is None:
            return f"{name(field)}: required when the event is {event.value}"

    if event is not LiveActivityEvent.START:
        for field in ("attributes_type", "attributes"):
            if getattr(fields, field) is not None:
                return f"{name(field)}: only when the event is start"
    return None


def _outside_0_1(value: float | None) -> bool:
    return value is not None and not 0 <= value <= 1
