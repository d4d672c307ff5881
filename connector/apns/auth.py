"""Token authentication: ES256 JWTs signed with the app's `.p8` key.

APNs rejects a token older than an hour and refuses a connection that changes its
token more than once in 20 minutes, so a token is minted when first needed, reused for
every request, and replaced after `ROTATE_AFTER_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from connector.errors import ConfigurationError
from connector.redaction import MASK

ROTATE_AFTER_S = 50 * 60


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Read a `.p8` key; a missing, unreadable or wrong key is a configuration error."""
    try:
        pem = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"key file {path} does not exist") from exc
    except OSError as exc:
        raise ConfigurationError(
            f"key file {path} cannot be read: {exc.strerror}"
        ) from exc

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"key file {path} is not a PEM private key") from exc

    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(f"key file {path} is not a P-256 (ES256) key")
    return key


class ProviderToken:
    """The `authorization` header value for one app's key, minted lazily."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        key_id: str,
        team_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        self._header: str | None = None
        self._issued_at = 0.0
        self.mints = 0

    def header(self) -> str:
        """`bearer <jwt>`: the current token, minted first if none or too old."""
        now = self._clock()
        if self._header is None or now - self._issued_at >= ROTATE_AFTER_S:
            self._mint(now)
        assert self._header is not None
        return self._header

    def invalidate(self) -> None:
        """Forget the token, so the next request mints a new one."""
        self._header = None

    def _mint(self, now: float) -> None:
        token = jwt.encode(
            {"iss": self._team_id, "iat": int(now)},
            self._key,
            algorithm="ES256",
            headers={"kid": self._key_id},
        )
        self._header = f"bearer {token}"
        self._issued_at = now
        self.mints += 1

    def __repr__(self) -> str:
        return f"ProviderToken(key_id={self._key_id!r}, team_id={self._team_id!r}, token={MASK})"
