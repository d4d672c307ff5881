import uuid

import pytest

from connector.apns.notification import (
    APNS_ID_NAMESPACE,
    LocalRejection,
    Notification,
    has_expired,
    prepare,
)
from connector.apns.push_types import PushType
from connector.apns.reasons import LocalReason, Reason
from connector.events import NotificationRequest

TOKEN = "ab" * 32


def request(**fields: object) -> NotificationRequest:
    base: dict[str, object] = {
        "id": "req-1",
        "device_token": TOKEN,
        "topic": "com.example.app",
    }
    base.update(fields)
    return NotificationRequest(**base)  # type: ignore[arg-type]


def test_alert_becomes_path_headers_and_body() -> None:
    prepared = prepare(request(aps={"alert": "héllo"}, data={"order": 7}))

    assert isinstance(prepared, Notification)
    assert prepared.path == f"/3/device/{TOKEN}"
    assert prepared.headers == {
        "apns-push-type": "alert",
        "apns-topic": "com.example.app",
        "apns-id": str(uuid.uuid5(APNS_ID_NAMESPACE, "req-1")),
    }
    # Non-ASCII goes out as raw UTF-8, never as \u escapes.
    assert prepared.body == '{"order":7,"aps":{"alert":"héllo"}}'.encode()


def test_resend_of_a_request_carries_the_same_apns_id() -> None:
    first = prepare(request())
    second = prepare(request())
    assert isinstance(first, Notification) and isinstance(second, Notification)
    assert first.apns_id == second.apns_id == first.headers["apns-id"]


def test_token_is_normalised() -> None:
    prepared = prepare(request(device_token=f"<{TOKEN.upper()[:8]} {TOKEN[8:]}>"))
    assert isinstance(prepared, Notification)
    assert prepared.device_token == TOKEN


def test_background_defaults_to_priority_5_and_voip_gets_its_suffix() -> None:
    background = prepare(request(push_type=PushType.BACKGROUND, content_available=1))
    voip = prepare(request(push_type=PushType.VOIP, topic="com.example.app.voip"))
    assert isinstance(background, Notification) and isinstance(voip, Notification)
    assert background.headers["apns-priority"] == "5"
    assert voip.headers["apns-topic"] == "com.example.app.voip"


def test_expiration_zero_is_sent_and_collapse_id_kept() -> None:
    prepared = prepare(request(expiration=0, collapse_id="score", priority=10))
    assert isinstance(prepared, Notification)
    assert prepared.headers["apns-expiration"] == "0"
    assert prepared.headers["apns-collapse-id"] == "score"
    assert prepared.headers["apns-priority"] == "10"


@pytest.mark.parametrize(
    ("fields", "reason", "detail"),
    [
        (
            {"device_token": "zz-not-hex"},
            Reason.BAD_DEVICE_TOKEN,
            "device_token: must be hex of even length",
        ),
        (
            {"device_token": "abc"},
            Reason.BAD_DEVICE_TOKEN,
            "device_token: must be hex of even length",
        ),
        ({"priority": 7}, Reason.BAD_PRIORITY, "priority: must be 1, 5 or 10"),
        (
            {"push_type": PushType.BACKGROUND, "priority": 10, "content_available": 1},
            Reason.BAD_PRIORITY,
            "priority: a background push must not use 10",
        ),
        (
            {"expiration": -1},
            Reason.BAD_EXPIRATION_DATE,
            "expiration: must be UNIX seconds, 0 or more",
        ),
        (
            {"push_type": PushType.WIDGETS},
            LocalReason.INVALID_PAYLOAD,
            "content_changed: a widgets push needs true",
        ),
        (
            # 22 three-byte characters: 22 characters, 66 bytes.
            {"collapse_id": "€" * 22},
            Reason.BAD_COLLAPSE_ID,
            "collapse_id: at most 64 bytes of UTF-8",
        ),
        (
            {"aps": {"alert": "x" * 4100}},
            Reason.PAYLOAD_TOO_LARGE,
            "payload: 4120 bytes, over the 4096-byte limit for alert",
        ),
    ],
)
def test_request_apple_would_refuse_is_rejected_locally(
    fields: dict[str, object], reason: Reason | LocalReason, detail: str
) -> None:
    assert prepare(request(**fields)) == LocalRejection(reason, detail)


def test_size_limit_counts_bytes_and_voip_allows_more() -> None:
    # {"aps":{"alert":"..."}} is 20 bytes around the alert text.
    exactly = prepare(request(aps={"alert": "x" * 4076}))
    over = prepare(request(aps={"alert": "x" * 4077}))
    voip = prepare(request(push_type=PushType.VOIP, aps={"alert": "x" * 5100}))
    assert isinstance(exactly, Notification) and len(exactly.body) == 4096
    assert isinstance(over, LocalRejection)
    assert isinstance(voip, Notification) and len(voip.body) == 5120


def test_repr_hides_the_token() -> None:
    prepared = prepare(request())
    assert TOKEN not in repr(prepared)
    assert TOKEN not in repr(request())


@pytest.mark.parametrize(
    ("expiration", "now_s", "expired"),
    [
        (None, 1_700_000_000.5, False),
        # 0 asks Apple to try once, now: it never passes before sending.
        (0, 1_700_000_000.5, False),
        (1_700_000_001, 1_700_000_000.5, False),
        (1_700_000_000, 1_700_000_000.0, False),
        (1_700_000_000, 1_700_000_000.5, True),
    ],
)
def test_expiration_passes_only_when_set_and_in_the_past(
    expiration: int | None, now_s: float, expired: bool
) -> None:
    prepared = prepare(request(expiration=expiration))
    assert isinstance(prepared, Notification)
    assert has_expired(prepared, now_s) is expired
    assert prepared.headers.get("apns-expiration") == (
        None if expiration is None else str(expiration)
    )
