"""The eleven push types, their topic suffixes and the headers APNs reads.

`apns-topic` is the app's bundle id with a suffix that depends on the push type; the
suffix is applied here, exactly once, so a producer may send either the bare bundle id
or the already-suffixed topic.
"""

from __future__ import annotations

import enum


class PushType(enum.StrEnum):
    ALERT = "alert"
    BACKGROUND = "background"
    VOIP = "voip"
    COMPLICATION = "complication"
    FILEPROVIDER = "fileprovider"
    MDM = "mdm"
    LOCATION = "location"
    LIVEACTIVITY = "liveactivity"
    PUSHTOTALK = "pushtotalk"
    WIDGETS = "widgets"
    CONTROLS = "controls"


TOPIC_SUFFIX: dict[PushType, str] = {
    PushType.VOIP: ".voip",
    PushType.COMPLICATION: ".complication",
    PushType.FILEPROVIDER: ".pushkit.fileprovider",
    PushType.LOCATION: ".location-query",
    PushType.LIVEACTIVITY: ".push-type.liveactivity",
    PushType.PUSHTOTALK: ".voip-ptt",
    PushType.WIDGETS: ".push-type.widgets",
}

MAX_PAYLOAD_BYTES = 4096
MAX_VOIP_PAYLOAD_BYTES = 5120
MAX_COLLAPSE_ID_BYTES = 64


def max_payload_bytes(push_type: PushType) -> int:
    """Apple's limit on the JSON body, in UTF-8 bytes."""
    if push_type is PushType.VOIP:
        return MAX_VOIP_PAYLOAD_BYTES
    return MAX_PAYLOAD_BYTES


def apns_topic(bundle_id: str, push_type: PushType) -> str:
    """The `apns-topic` header: the bundle id with the push type's suffix, once."""
    suffix = TOPIC_SUFFIX.get(push_type, "")
    if suffix and bundle_id.endswith(suffix):
        return bundle_id
    return bundle_id + suffix


def bundle_id_of(topic: str) -> str:
    """The bundle id inside an `apns-topic`, whatever suffix it carries."""
    for suffix in sorted(TOPIC_SUFFIX.values(), key=len, reverse=True):
        if topic.endswith(suffix):
            return topic[: -len(suffix)]
    return topic


class Header(enum.StrEnum):
    """The request and response headers of the provider API."""

    AUTHORIZATION = "authorization"
    PUSH_TYPE = "apns-push-type"
    TOPIC = "apns-topic"
    ID = "apns-id"
    UNIQUE_ID = "apns-unique-id"
    EXPIRATION = "apns-expiration"
    PRIORITY = "apns-priority"
    COLLAPSE_ID = "apns-collapse-id"


class InterruptionLevel(enum.StrEnum):
    """`interruption-level`: how strongly a notification may interrupt the user."""

    PASSIVE = "passive"
    ACTIVE = "active"
    TIME_SENSITIVE = "time-sensitive"
    # Needs Apple's critical-alert entitlement; rings through Focus and silent mode.
    CRITICAL = "critical"


class LiveActivityEvent(enum.StrEnum):
    """`event` of a Live Activity push."""

    # Push-to-start: needs `attributes-type` and `attributes`.
    START = "start"
    UPDATE = "update"
    END = "end"


APS = "aps"
"""The key of Apple's dictionary in the payload; custom keys sit beside it."""

PRODUCTION_HOST = "api.push.apple.com"
SANDBOX_HOST = "api.sandbox.push.apple.com"
DEVICE_PATH_PREFIX = "/3/device/"
PORTS = frozenset({443, 2197})
"""The ports APNs listens on; 2197 is for networks that block outgoing 443."""
