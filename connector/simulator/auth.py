"""How the simulator decides that a request comes from a provider it knows.

APNs authenticates a connection in one of two ways: by the provider token (a JWT sent
with every request) or by the TLS client certificate presented once at the handshake.
Each accepted connection gets one `ConnectionAuth`, chosen when the connection is made,
so certificate authentication can join as another implementation without the answer
rules changing.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connector.apns.push_types import Header
from connector.apns.reasons import Reason

# Apple's rule: a provider token is good for one hour from its `iat`.
TOKEN_LIFETIME_S = 3600
# Apple tolerates a provider clock running a little ahead; the simulator allows this.
TOKEN_CLOCK_SKEW_S = 60

_ALGORITHM = "ES256"
_BEARER = "bearer"
# Verified tokens remembered per connection: mature clients use one at a time, and two
# cover a rotation.
_VERIFIED_TOKENS_KEPT = 2

# The signature is checked by PyJWT; the claims are checked below, by Apple's rules
# (PyJWT would accept a float `iat` and knows nothing of the one-hour lifetime).
_DECODER = jwt.PyJWT(
    options={
        "verify_signature": True,
        "verify_exp": False,
        "verify_nbf": False,
        "verify_iat": False,
        "verify_aud": False,
        "verify_iss": False,
        "verify_sub": False,
        "verify_jti": False,
    }
)


@dataclasses.dataclass(frozen=True, slots=True)
class SigningKey:
    """The public half of a provider's `.p8` key and the team it belongs to."""

    team_id: str
    public_key: ec.EllipticCurvePublicKey


class ConnectionAuth(Protocol):
    """The credential check of one connection."""

    def check(self, headers: Mapping[str, str]) -> Reason | None:
        """The reason to reject a request with these headers, or None to accept."""


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in a PEM: a public key, or a `.p8` private key.

    Raises ValueError for anything else, including keys on other curves.
    """
    key: object
    if b"PRIVATE KEY" in pem:
        key = serialization.load_pem_private_key(pem, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(pem)

    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return key
    raise ValueError("not a P-256 (ES256) key")


class TokenAuth:
    """Provider-token authentication, as APNs applies it to one connection.

    A token whose signature has been verified on this connection is remembered, so a
    client reusing its token (as Apple asks) costs a dictionary lookup per request; its
    age is still checked every time.
    """

    def __init__(
        self,
        keys: Mapping[str, SigningKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._verified: dict[str, int] = {}

    def check(self, headers: Mapping[str, str]) -> Reason | None:
        # Apple's reading: no header, or a bearer scheme with nothing after it, is a
        # missing token; any other scheme is a token it cannot accept.
        scheme, _, token = headers.get(Header.AUTHORIZATION, "").partition(" ")
        token = token.strip()
        if not token and scheme.lower() in ("", _BEARER):
            return Reason.MISSING_PROVIDER_TOKEN
        if scheme.lower() != _BEARER:
            return Reason.INVALID_PROVIDER_TOKEN

        issued_at = self._verified.get(token)
        if issued_at is None:
            issued_at = self._verify(token)
            if issued_at is None:
                return Reason.INVALID_PROVIDER_TOKEN
            self._remember(token, issued_at)

        now = self._clock()
        if now - issued_at > TOKEN_LIFETIME_S:
            return Reason.EXPIRED_PROVIDER_TOKEN
        if issued_at - now > TOKEN_CLOCK_SKEW_S:
            return Reason.INVALID_PROVIDER_TOKEN
        return None

    def _verify(self, token: str) -> int | None:
        """The token's `iat` if its signature, key, algorithm and issuer are right."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key_id = header.get("kid")
        signing_key = self._keys.get(key_id) if isinstance(key_id, str) else None
        if signing_key is None or header.get("alg") != _ALGORITHM:
            return None

        try:
            claims = _DECODER.decode(
                token, signing_key.public_key, algorithms=[_ALGORITHM]
            )
        except jwt.PyJWTError:
            return None

        # Apple wants whole seconds; bool is excluded although Python calls it an int.
        issued_at = claims.get("iat")
        if claims.get("iss") != signing_key.team_id or type(issued_at) is not int:
            return None
        return issued_at

    def _remember(self, token: str, issued_at: int) -> None:
        if len(self._verified) >= _VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = issued_at
