"""Turning a request into exactly what goes to Apple, checked before it is sent.

Nothing Apple would refuse for its form leaves the connector: a malformed token, a
payload over the size limit or a collapse id that is too long is rejected here, with a
reason that names the field and the rule.
"""

from __future__ import annotations

import hashlib
import string
import uuid
from dataclasses import dataclass

from connector.apns.payload import PayloadProblem, build_aps, encode_body
from connector.apns.push_types import (
    DEVICE_PATH_PREFIX,
    MAX_COLLAPSE_ID_BYTES,
    Header,
    PushType,
    apns_topic,
    max_payload_bytes,
)
from connector.apns.reasons import LocalReason, Reason
from connector.events import NotificationRequest

# apns-id is derived from the request id, so a resend carries the same apns-id.
APNS_ID_NAMESPACE = uuid.UUID("6f1c1d2e-8f43-4d55-9a5c-2b7c0f3e9a10")
_NAMESPACE_BYTES = APNS_ID_NAMESPACE.bytes
PRIORITIES = frozenset({1, 5, 10})
_HEX = frozenset(string.hexdigits.lower())


@dataclass(frozen=True, slots=True)
class Notification:
    """A request ready to send: the path, the headers and the body bytes."""

    device_token: str
    path: str
    headers: dict[str, str]
    body: bytes
    apns_id: str
    # UNIX seconds after which Apple would no longer deliver it; 0 means at once.
    expiration: int | None = None

    def __repr__(self) -> str:
        return f"Notification(apns_id={self.apns_id!r}, body_bytes={len(self.body)})"


@dataclass(frozen=True, slots=True)
class LocalRejection:
    """Why a request was refused before reaching Apple."""

    reason: Reason | LocalReason
    detail: str


def normalise_token(raw: str) -> str:
    """The token as Apple wants it: lowercase hex, without spaces or brackets."""
    return raw.strip().strip("<>").replace(" ", "").lower()


def apns_id_for(request_id: str) -> str:
    """`str(uuid.uuid5(APNS_ID_NAMESPACE, request_id))`, without the UUID object's
    cost, which is a twentieth of a request's."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + request_id.encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    hex_ = digest[:16].hex()
    return f"{hex_[:8]}-{hex_[8:12]}-{hex_[12:16]}-{hex_[16:20]}-{hex_[20:]}"


def has_expired(notification: Notification, now_s: float) -> bool:
    """Whether the notification's expiration is already past at `now_s`.

    Expiration 0 asks Apple to try once, now, so it never passes before sending.
    """
    expiration = notification.expiration
    return expiration is not None and expiration != 0 and expiration < now_s


def prepare(request: NotificationRequest) -> Notification | LocalRejection:
    """Build the HTTP/2 request for `request`, or say why it cannot be sent."""
    token = normalise_token(request.device_token)
    # Tokens are 32 bytes today; Apple says they may grow, so only the form counts.
    if not token or len(token) % 2 or not _HEX.issuperset(token):
        return LocalRejection(
            Reason.BAD_DEVICE_TOKEN, "device_token: must be hex of even length"
        )

    headers = {
        Header.PUSH_TYPE.value: request.push_type.value,
        Header.TOPIC.value: apns_topic(request.topic, request.push_type),
        Header.ID.value: apns_id_for(request.id),
    }

    rejection = _add_priority(request, headers)
    if rejection is not None:
        return rejection

    if request.expiration is not None:
        if request.expiration < 0:
            return LocalRejection(
                Reason.BAD_EXPIRATION_DATE,
                "expiration: must be UNIX seconds, 0 or more",
            )
        headers[Header.EXPIRATION.value] = str(request.expiration)

    if request.collapse_id is not None:
        if len(request.collapse_id.encode()) > MAX_COLLAPSE_ID_BYTES:
            return LocalRejection(
                Reason.BAD_COLLAPSE_ID,
                f"collapse_id: at most {MAX_COLLAPSE_ID_BYTES} bytes of UTF-8",
            )
        headers[Header.COLLAPSE_ID.value] = request.collapse_id

    body = _body(request)
    if isinstance(body, PayloadProblem):
        return LocalRejection(LocalReason.INVALID_PAYLOAD, body.detail)
    limit = max_payload_bytes(request.push_type)
    if len(body) > limit:
        return LocalRejection(
            Reason.PAYLOAD_TOO_LARGE,
            f"payload: {len(body)} bytes, over the {limit}-byte limit "
            f"for {request.push_type.value}",
        )

    return Notification(
        device_token=token,
        path=DEVICE_PATH_PREFIX + token,
        headers=headers,
        body=body,
        apns_id=headers[Header.ID.value],
        expiration=request.expiration,
    )


def _add_priority(
    request: NotificationRequest, headers: dict[str, str]
) -> LocalRejection | None:
    priority = request.priority
    background = request.push_type is PushType.BACKGROUND
    if priority is None:
        # Apple requires priority 5 for background pushes; for the others, it
        # assumes 10 when the header is absent.
        if background:
            headers[Header.PRIORITY.value] = "5"
        return None

    if priority not in PRIORITIES:
        return LocalRejection(Reason.BAD_PRIORITY, "priority: must be 1, 5 or 10")
    if background and priority == 10:
        return LocalRejection(
            Reason.BAD_PRIORITY, "priority: a background push must not use 10"
        )
    headers[Header.PRIORITY.value] = str(priority)
    return None


def _body(request: NotificationRequest) -> bytes | PayloadProblem:
    aps = build_aps(request, request.aps, request.push_type)
    if isinstance(aps, PayloadProblem):
        return aps
    return encode_body(aps, request.data)
