"""What the simulator remembers of each request it answered, for tests to inspect."""

from __future__ import annotations

import dataclasses
import hashlib

from connector.apns.push_types import DEVICE_PATH_PREFIX
from connector.apns.reasons import Reason


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class ReceivedRequest:
    """One request and the simulator's answer to it.

    `headers` holds the regular headers (pseudo-headers are `method` and `path`) with
    lowercase names; a repeated header keeps its first value. The record holds the
    bearer token and the device token as sent, so tests can assert on them; its repr
    shows neither.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    reason: Reason | None
    apns_id: str
    # Which connection carried the request, numbered from 1 in order of acceptance.
    connection_id: int

    def __repr__(self) -> str:
        return (
            f"ReceivedRequest(method={self.method!r}, path={masked_path(self.path)!r}, "
            f"body_bytes={len(self.body)}, status={self.status}, "
            f"reason={self.reason!r}, apns_id={self.apns_id!r}, "
            f"connection_id={self.connection_id})"
        )


def token_digest(device_token: str) -> str:
    """A short stable stand-in for a device token, safe to log."""
    return hashlib.sha256(device_token.lower().encode()).hexdigest()[:12]


def masked_path(path: str) -> str:
    """The request path with its device token replaced by the token's digest."""
    if not path.startswith(DEVICE_PATH_PREFIX):
        return path
    return (
        DEVICE_PATH_PREFIX + "sha256:" + token_digest(path[len(DEVICE_PATH_PREFIX) :])
    )
