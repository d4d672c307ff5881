"""The records on the connector's four topics, and their encoders and decoders.

- `NotificationRequest` on `apns.requests`, keyed by its id, written by backends;
- `Outcome` on `apns.results`, keyed by the request id, one per request;
- `InvalidToken` on `apns.invalid-tokens`, keyed by the device token;
- `DeadLetter` on `apns.requests.dlq`: a request that could not be decoded.

Every event carries a schema version `v`. Fields added later always have defaults and
unknown fields are ignored, so producers and consumers can be upgraded one at a time.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from connector.apns.payload import ApsFields
from connector.apns.push_types import PushType
from connector.errors import DecodeError
from connector.redaction import token_digest

SCHEMA_VERSION = 1


class NotificationRequest(ApsFields, kw_only=True, frozen=True):
    """One notification to deliver to one device.

    The `aps` dictionary comes ready in `aps`, or as the typed fields inherited from
    `ApsFields` (`alert`, `badge`, `sound`, ...), not both; custom keys are in `data`.
    """

    id: str
    device_token: str
    topic: str
    push_type: PushType = PushType.ALERT
    priority: int | None = None
    expiration: int | None = None
    collapse_id: str | None = None
    # msgspec copies these defaults per instance (ruff cannot tell that the base
    # class is a Struct).
    aps: dict[str, Any] = {}  # noqa: RUF012
    data: dict[str, Any] = {}  # noqa: RUF012
    v: int = SCHEMA_VERSION

    def __repr__(self) -> str:
        # The device token is personal data: never shown whole.
        return (
            f"NotificationRequest(id={self.id!r}, topic={self.topic!r}, "
            f"push_type={self.push_type.value!r}, "
            f"token={token_digest(self.device_token)})"
        )


class Status(enum.StrEnum):
    """How a request ended."""

    DELIVERED = "delivered"
    # Apple, or the connector's own checks, refused the request; do not resend it.
    REJECTED = "rejected"
    # The connector could not get an answer within its retry budget, or its
    # credentials for the app are wrong; resending later may work.
    FAILED = "failed"
    # The request's expiration passed before it could be sent.
    EXPIRED = "expired"


class Timings(msgspec.Struct, kw_only=True, frozen=True):
    """Milliseconds since the epoch at each step of a request's life."""

    requested_ms: int | None = None
    consumed_ms: int = 0
    completed_ms: int = 0


class Outcome(msgspec.Struct, kw_only=True, frozen=True):
    """The one result published for each request."""

    request_id: str
    status: Status
    reason: str | None = None
    http_status: int | None = None
    apns_id: str | None = None
    invalidated_at_ms: int | None = None
    attempts: int = 0
    detail: str | None = None
    topic: str | None = None
    push_type: str | None = None
    token_digest: str | None = None
    partition: int = -1
    offset: int = -1
    timings: Timings = Timings()
    # Apple answered BadDeviceToken: the token may be good in the app's other
    # environment (a development build's token sent to production, say).
    possible_environment_mismatch: bool = False
    # A `failed` outcome that a later resend may turn into a delivery: APNs was
    # unreachable or busy for the whole retry budget.
    retriable: bool = False
    v: int = SCHEMA_VERSION


class InvalidToken(msgspec.Struct, kw_only=True, frozen=True):
    """A device token to stop sending to; the one record that carries a token."""

    device_token: str
    topic: str
    reason: str
    invalidated_at_ms: int | None = None
    found_locally: bool = False
    request_id: str | None = None
    # As on the outcome: check the app's environment before deleting the token.
    possible_environment_mismatch: bool = False
    v: int = SCHEMA_VERSION

    def __repr__(self) -> str:
        return (
            f"InvalidToken(topic={self.topic!r}, reason={self.reason!r}, "
            f"token={token_digest(self.device_token)})"
        )


DEAD_LETTER_MAX_VALUE_BYTES = 512 * 1024


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """A request record that could not be decoded, kept for inspection.

    The value is kept whole up to `DEAD_LETTER_MAX_VALUE_BYTES`; a longer one is cut
    there (`truncated`), so that the dead letter, base64 and all, still fits in a
    Kafka record. `value_bytes` is the original length.
    """

    error: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = []
    value_bytes: int = 0
    truncated: bool = False
    v: int = SCHEMA_VERSION


request_decoder = msgspec.json.Decoder(NotificationRequest)
encoder = msgspec.json.Encoder()


def decode_request(value: bytes | None) -> NotificationRequest:
    """Decode a request record's value; raises DecodeError naming the problem."""
    if value is None:
        raise DecodeError("the record has no value")
    try:
        return request_decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"invalid request: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from exc
