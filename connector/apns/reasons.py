"""Apple's answers, and what each one means for a sender.

Every reason string APNs documents is named here once, with the class of answer it
belongs to. The pipeline, the retry policy and the simulator all read this table;
nothing else in the package spells a reason. A reason APNs sends that is not listed is
kept verbatim and treated as a permanent rejection.
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """The `reason` strings of APNs' error bodies."""

    BAD_COLLAPSE_ID = "BadCollapseId"
    BAD_DEVICE_TOKEN = "BadDeviceToken"
    BAD_EXPIRATION_DATE = "BadExpirationDate"
    BAD_MESSAGE_ID = "BadMessageId"
    BAD_PRIORITY = "BadPriority"
    BAD_TOPIC = "BadTopic"
    DEVICE_TOKEN_NOT_FOR_TOPIC = "DeviceTokenNotForTopic"
    DUPLICATE_HEADERS = "DuplicateHeaders"
    IDLE_TIMEOUT = "IdleTimeout"
    INVALID_PUSH_TYPE = "InvalidPushType"
    MISSING_DEVICE_TOKEN = "MissingDeviceToken"
    MISSING_TOPIC = "MissingTopic"
    PAYLOAD_EMPTY = "PayloadEmpty"
    TOPIC_DISALLOWED = "TopicDisallowed"
    BAD_CERTIFICATE = "BadCertificate"
    BAD_CERTIFICATE_ENVIRONMENT = "BadCertificateEnvironment"
    EXPIRED_PROVIDER_TOKEN = "ExpiredProviderToken"
    FORBIDDEN = "Forbidden"
    INVALID_PROVIDER_TOKEN = "InvalidProviderToken"
    MISSING_PROVIDER_TOKEN = "MissingProviderToken"
    BAD_ENVIRONMENT_KEY_ID_IN_TOKEN = "BadEnvironmentKeyIdInToken"
    BAD_ENVIRONMENT_KEY_IN_TOKEN = "BadEnvironmentKeyInToken"
    UNRELATED_KEY_ID_IN_TOKEN = "UnrelatedKeyIdInToken"
    BAD_PATH = "BadPath"
    METHOD_NOT_ALLOWED = "MethodNotAllowed"
    EXPIRED_TOKEN = "ExpiredToken"
    UNREGISTERED = "Unregistered"
    PAYLOAD_TOO_LARGE = "PayloadTooLarge"
    TOO_MANY_PROVIDER_TOKEN_UPDATES = "TooManyProviderTokenUpdates"
    TOO_MANY_REQUESTS = "TooManyRequests"
    INTERNAL_SERVER_ERROR = "InternalServerError"
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    SHUTDOWN = "Shutdown"


class Verdict(enum.StrEnum):
    """What a sender does with an answer."""

    DELIVERED = "delivered"
    # The request is wrong: sending it again unchanged gets the same answer.
    PERMANENT = "permanent"
    # The device token is dead or belongs elsewhere: stop sending to it.
    TOKEN_INVALID = "token_invalid"
    # Apple or the connection had a passing problem: resend later.
    RETRIABLE = "retriable"
    # Our credentials or settings are wrong: stop using them and alert.
    CONFIGURATION = "configuration"


REASON_STATUS: dict[Reason, int] = {
    Reason.BAD_COLLAPSE_ID: 400,
    Reason.BAD_DEVICE_TOKEN: 400,
    Reason.BAD_EXPIRATION_DATE: 400,
    Reason.BAD_MESSAGE_ID: 400,
    Reason.BAD_PRIORITY: 400,
    Reason.BAD_TOPIC: 400,
    Reason.DEVICE_TOKEN_NOT_FOR_TOPIC: 400,
    Reason.DUPLICATE_HEADERS: 400,
    Reason.IDLE_TIMEOUT: 400,
    Reason.INVALID_PUSH_TYPE: 400,
    Reason.MISSING_DEVICE_TOKEN: 400,
    Reason.MISSING_TOPIC: 400,
    Reason.PAYLOAD_EMPTY: 400,
    Reason.TOPIC_DISALLOWED: 400,
    Reason.BAD_CERTIFICATE: 403,
    Reason.BAD_CERTIFICATE_ENVIRONMENT: 403,
    Reason.EXPIRED_PROVIDER_TOKEN: 403,
    Reason.FORBIDDEN: 403,
    Reason.INVALID_PROVIDER_TOKEN: 403,
    Reason.MISSING_PROVIDER_TOKEN: 403,
    Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN: 403,
    Reason.BAD_ENVIRONMENT_KEY_IN_TOKEN: 403,
    Reason.UNRELATED_KEY_ID_IN_TOKEN: 403,
    Reason.BAD_PATH: 404,
    Reason.METHOD_NOT_ALLOWED: 405,
    Reason.EXPIRED_TOKEN: 410,
    Reason.UNREGISTERED: 410,
    Reason.PAYLOAD_TOO_LARGE: 413,
    Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES: 429,
    Reason.TOO_MANY_REQUESTS: 429,
    Reason.INTERNAL_SERVER_ERROR: 500,
    Reason.SERVICE_UNAVAILABLE: 503,
    Reason.SHUTDOWN: 503,
}
"""The HTTP status APNs sends with each reason."""

_VERDICTS: dict[Reason, Verdict] = {
    Reason.BAD_DEVICE_TOKEN: Verdict.TOKEN_INVALID,
    Reason.DEVICE_TOKEN_NOT_FOR_TOPIC: Verdict.TOKEN_INVALID,
    Reason.EXPIRED_TOKEN: Verdict.TOKEN_INVALID,
    Reason.UNREGISTERED: Verdict.TOKEN_INVALID,
    Reason.BAD_TOPIC: Verdict.CONFIGURATION,
    Reason.MISSING_TOPIC: Verdict.CONFIGURATION,
    Reason.TOPIC_DISALLOWED: Verdict.CONFIGURATION,
    Reason.BAD_CERTIFICATE: Verdict.CONFIGURATION,
    Reason.BAD_CERTIFICATE_ENVIRONMENT: Verdict.CONFIGURATION,
    Reason.FORBIDDEN: Verdict.CONFIGURATION,
    Reason.INVALID_PROVIDER_TOKEN: Verdict.CONFIGURATION,
    Reason.MISSING_PROVIDER_TOKEN: Verdict.CONFIGURATION,
    Reason.BAD_ENVIRONMENT_KEY_ID_IN_TOKEN: Verdict.CONFIGURATION,
    Reason.BAD_ENVIRONMENT_KEY_IN_TOKEN: Verdict.CONFIGURATION,
    Reason.UNRELATED_KEY_ID_IN_TOKEN: Verdict.CONFIGURATION,
    Reason.IDLE_TIMEOUT: Verdict.RETRIABLE,
    Reason.EXPIRED_PROVIDER_TOKEN: Verdict.RETRIABLE,
    Reason.TOO_MANY_REQUESTS: Verdict.RETRIABLE,
    Reason.INTERNAL_SERVER_ERROR: Verdict.RETRIABLE,
    Reason.SERVICE_UNAVAILABLE: Verdict.RETRIABLE,
    Reason.SHUTDOWN: Verdict.RETRIABLE,
    # The connection changed its token too often; the notification itself is fine,
    # and a resend with the connection's current token is accepted.
    Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES: Verdict.RETRIABLE,
}

TOKEN_INVALID_REASONS = frozenset(
    reason for reason, verdict in _VERDICTS.items() if verdict is Verdict.TOKEN_INVALID
)
"""Reasons after which the device token goes to the invalid-token topic."""

ENVIRONMENT_MISMATCH_REASONS = frozenset({Reason.BAD_DEVICE_TOKEN})
"""Apple's answers that a token from the app's other environment also gets: a token
of a development build is a BadDeviceToken in production, and the other way round."""


def classify(status: int, reason: str | None) -> Verdict:
    """The verdict for an answer; an unknown reason is a permanent rejection.

    The answers the APNs client gives itself for a credential it knows APNs would
    refuse (`LocalReason.CERTIFICATE_EXPIRED`, `CERTIFICATE_REJECTED`) are classified
    here too, as configuration problems.
    """
    if status == 200:
        return Verdict.DELIVERED
    if reason is None:
        # No body to read (a proxy in between, say): only the status can tell.
        return Verdict.RETRIABLE if status in (500, 503) else Verdict.PERMANENT
    try:
        known = Reason(reason)
    except ValueError:
        return _LOCAL_VERDICTS.get(reason, Verdict.PERMANENT)
    return _VERDICTS.get(known, Verdict.PERMANENT)


class LocalReason(enum.StrEnum):
    """Reasons the connector gives itself, for requests Apple never answered."""

    # The record on the requests topic could not be decoded; `detail` says why.
    MALFORMED_REQUEST = "MalformedRequest"
    # No app in the settings has the request's topic.
    UNKNOWN_TOPIC = "UnknownTopic"
    # Sending failed (connection, timeout) on every attempt.
    DELIVERY_FAILED = "DeliveryFailed"
    # The request's expiration had passed before it could be sent.
    EXPIRED = "Expired"
    # The aps dictionary or custom data break Apple's rules; `detail` names the key.
    INVALID_PAYLOAD = "InvalidPayload"
    # The app's client certificate is past its expiry date: nothing is sent with it.
    CERTIFICATE_EXPIRED = "CertificateExpired"
    # APNs refused the app's client certificate during the TLS handshake (revoked,
    # not issued by Apple, or of another kind); nothing can be sent with it.
    CERTIFICATE_REJECTED = "CertificateRejected"


_LOCAL_VERDICTS: dict[str, Verdict] = {
    LocalReason.CERTIFICATE_EXPIRED: Verdict.CONFIGURATION,
    LocalReason.CERTIFICATE_REJECTED: Verdict.CONFIGURATION,
}

# The TLS alerts a server sends when it refuses the client's certificate, by the
# names OpenSSL puts into its error messages, and what each means for the app.
_CERTIFICATE_ALERTS = {
    "ALERT_CERTIFICATE_EXPIRED": LocalReason.CERTIFICATE_EXPIRED,
    "ALERT_CERTIFICATE_REVOKED": LocalReason.CERTIFICATE_REJECTED,
    "ALERT_BAD_CERTIFICATE": LocalReason.CERTIFICATE_REJECTED,
    "ALERT_UNSUPPORTED_CERTIFICATE": LocalReason.CERTIFICATE_REJECTED,
    "ALERT_CERTIFICATE_UNKNOWN": LocalReason.CERTIFICATE_REJECTED,
    "ALERT_UNKNOWN_CA": LocalReason.CERTIFICATE_REJECTED,
    "ALERT_CERTIFICATE_REQUIRED": LocalReason.CERTIFICATE_REJECTED,
}


def certificate_refusal(error: str) -> LocalReason | None:
    """The reason for a failed connection whose error names a TLS alert refusing
    the client certificate (`[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] ...`), else None.
    """
    for alert, reason in _CERTIFICATE_ALERTS.items():
        if alert in error:
            return reason
    return None
