"""The simulator's answer to one complete request, by Apple's rules.

Checks run in the order APNs applies them: method and path, credentials, headers,
device token, then body. The first failing check gives the answer, so a request that
is wrong in two ways is rejected for the earlier one, as Apple would.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Collection, Mapping

from connector.apns.push_types import (
    DEVICE_PATH_PREFIX,
    MAX_COLLAPSE_ID_BYTES,
    Header,
    PushType,
    apns_topic,
    bundle_id_of,
    max_payload_bytes,
)
from connector.apns.reasons import REASON_STATUS, Reason
from connector.simulator.auth import ConnectionAuth

_PRIORITIES = frozenset({"1", "5", "10"})
_PUSH_TYPES = frozenset(PushType)
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
_HEX_PAIRS = re.compile(r"(?:[0-9a-fA-F]{2})+")
# UNIX seconds; Apple documents no sign and no other notation.
_EXPIRATION = re.compile(r"[0-9]+")


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A complete request as the connection received it."""

    method: str
    path: str
    # Regular headers, lowercase names, first value of each.
    headers: Mapping[str, str]
    # Whether any regular header came more than once.
    repeated_header: bool
    body: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """The status, reason and (for a dead token) invalidation time to send back."""

    status: int
    reason: Reason | None = None
    timestamp_ms: int | None = None


ACCEPTED = Answer(status=200)
_REJECTIONS = {reason: Answer(REASON_STATUS[reason], reason) for reason in Reason}


def is_device_token(token: str) -> bool:
    """Whether `token` looks like a device token: hex digits, whole bytes."""
    return _HEX_PAIRS.fullmatch(token) is not None


def valid_apns_id(value: str | None) -> str | None:
    """`value` if it is an `apns-id` Apple would echo, otherwise None."""
    if value is not None and _CANONICAL_UUID.fullmatch(value):
        return value
    return None


class Rules:
    """Apple's checks plus the per-token behaviour a test has arranged."""

    def __init__(
        self,
        *,
        unregistered: Mapping[str, int],
        injected: Mapping[str, Reason],
        topics: Collection[str] | None,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._unregistered: dict[str, int] = {}
        for token, timestamp_ms in unregistered.items():
            self.register_unregistered(token, timestamp_ms)
        self._injected = {
            _device_key(token): Reason(r) for token, r in injected.items()
        }
        self._topics = None if topics is None else frozenset(topics)
        self._clock_ms = clock_ms

    def register_unregistered(self, token: str, timestamp_ms: int) -> None:
        """From now on answer `token` with 410 Unregistered and this timestamp."""
        if type(timestamp_ms) is not int or timestamp_ms < 0:
            raise ValueError("timestamp_ms must be a non-negative int of milliseconds")
        self._unregistered[_device_key(token)] = timestamp_ms

    def inject(self, token: str, reason: Reason) -> None:
        """From now on answer `token` with `reason` (after the credential checks)."""
        self._injected[_device_key(token)] = Reason(reason)

    def answer(self, request: Request, auth: ConnectionAuth) -> Answer:
        if request.method != "POST":
            return _REJECTIONS[Reason.METHOD_NOT_ALLOWED]
        device_token = _device_token_in(request.path)
        if device_token is None:
            return _REJECTIONS[Reason.BAD_PATH]

        reason = auth.check(request.headers)
        if reason is not None:
            return _REJECTIONS[reason]

        reason = self._header_rejection(request, auth)
        if reason is not None:
            return _REJECTIONS[reason]

        answer = self._device_answer(device_token)
        if answer is not None:
            return answer

        # The header step has vouched for the push type.
        push_type = PushType(request.headers[Header.PUSH_TYPE])
        if not request.body:
            return _REJECTIONS[Reason.PAYLOAD_EMPTY]
        if len(request.body) > max_payload_bytes(push_type):
            return _REJECTIONS[Reason.PAYLOAD_TOO_LARGE]
        return ACCEPTED

    def _header_rejection(
        self, request: Request, auth: ConnectionAuth
    ) -> Reason | None:
        headers = request.headers
        if request.repeated_header:
            return Reason.DUPLICATE_HEADERS

        push_type = headers.get(Header.PUSH_TYPE)
        if push_type not in _PUSH_TYPES:
            return Reason.INVALID_PUSH_TYPE

        # Only token authentication needs the topic spelled out; a certificate names
        # its own topic, which stands in for a missing header.
        topic = headers.get(Header.TOPIC) or auth.default_topic
        if not topic:
            return Reason.MISSING_TOPIC
        bundle_id = bundle_id_of(topic)
        if self._topics is not None and bundle_id not in self._topics:
            return Reason.BAD_TOPIC
        # A topic carries the suffix of its push type and no other.
        if apns_topic(bundle_id, PushType(push_type)) != topic:
            return Reason.INVALID_PUSH_TYPE

        apns_id = headers.get(Header.ID)
        if apns_id is not None and valid_apns_id(apns_id) is None:
            return Reason.BAD_MESSAGE_ID
        priority = headers.get(Header.PRIORITY)
        if priority is not None and priority not in _PRIORITIES:
            return Reason.BAD_PRIORITY
        expiration = headers.get(Header.EXPIRATION)
        if expiration is not None and not _EXPIRATION.fullmatch(expiration):
            return Reason.BAD_EXPIRATION_DATE
        collapse_id = headers.get(Header.COLLAPSE_ID)
        if (
            collapse_id is not None
            and _utf8_length(collapse_id) > MAX_COLLAPSE_ID_BYTES
        ):
            return Reason.BAD_COLLAPSE_ID
        return None

    def _device_answer(self, device_token: str) -> Answer | None:
        if not device_token:
            return _REJECTIONS[Reason.MISSING_DEVICE_TOKEN]
        if not is_device_token(device_token):
            return _REJECTIONS[Reason.BAD_DEVICE_TOKEN]
        key = device_token.lower()

        injected = self._injected.get(key)
        if injected is not None:
            status = REASON_STATUS[injected]
            if status != 410:
                return _REJECTIONS[injected]
            # A dead token always says since when; an injected one died just now
            # unless the test registered a time for it.
            died_ms = self._unregistered.get(key, self._clock_ms())
            return Answer(status, injected, died_ms)

        unregistered_ms = self._unregistered.get(key)
        if unregistered_ms is not None:
            return Answer(
                REASON_STATUS[Reason.UNREGISTERED], Reason.UNREGISTERED, unregistered_ms
            )
        return None


def _device_token_in(path: str) -> str | None:
    """The device token of a `/3/device/<token>` path (maybe empty), else None."""
    if not path.startswith(DEVICE_PATH_PREFIX):
        return None
    token = path[len(DEVICE_PATH_PREFIX) :]
    if "/" in token or "?" in token:
        return None
    return token


def _device_key(token: str) -> str:
    # Hex is hex whatever its case: a test may register a token in either.
    if not is_device_token(token):
        raise ValueError("a device token is an even number of hex digits")
    return token.lower()


def _utf8_length(value: str) -> int:
    # Header values are decoded with surrogateescape, so this is the byte count sent.
    return len(value.encode("utf-8", "surrogateescape"))
