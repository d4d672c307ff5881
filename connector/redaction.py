"""How secrets and device tokens are shown where they must be identified.

Logs, spans and outcomes never carry a full device token, a JWT, key material or a
password. A device token is shown by a short digest: stable, so the same token can be
followed across log lines, and useless for sending a push.
"""

from __future__ import annotations

import hashlib

DIGEST_CHARS = 12


def token_digest(device_token: str) -> str:
    """A short, stable digest of a device token, safe to log."""
    return hashlib.sha256(device_token.encode()).hexdigest()[:DIGEST_CHARS]


MASK = "***"
