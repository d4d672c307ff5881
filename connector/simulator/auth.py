"""How the simulator decides that a request comes from a provider it knows.

APNs authenticates a connection in one of two ways: by the provider token (a JWT sent
with every request) or by the TLS client certificate presented once at the handshake.
Each accepted connection gets one `ConnectionAuth`, chosen when the connection is made:
`CertificateAuth` when the client presented a certificate, `TokenAuth` otherwise.

Token rules are kept per connection, as Apple keeps them: a token older than an hour is
expired; a token signed by a revoked key is invalid, however good its signature, from
the moment the key is revoked, on connections already open too; and, when `strict` is
on, all tokens of a connection come from one key, and a connection may change its
token only 20 minutes after it began using the last one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.apns.push_types import Header, bundle_id_of
from connector.apns.reasons import Reason

# Apple's rule: a provider token is good for one hour from its `iat`.
TOKEN_LIFETIME_S = 3600
# Apple's rule: a connection changes its token at most once every 20 minutes.
TOKEN_UPDATE_INTERVAL_S = 20 * 60
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

    @property
    def default_topic(self) -> str | None:
        """The topic of requests that name none (a certificate's own), if any."""

    @property
    def authenticated(self) -> bool:
        """Whether the connection has proven itself: APNs allows one stream until then."""

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


@dataclasses.dataclass(frozen=True, slots=True)
class _Verified:
    issued_at: int
    key_id: str


class TokenAuth:
    """Provider-token authentication, as APNs applies it to one connection.

    A token whose signature has been verified on this connection is remembered, so a
    client reusing its token (as Apple asks) costs a dictionary lookup per request; its
    age is still checked every time.

    `strict` adds Apple's rules for the connection as a whole: UnrelatedKeyIdInToken
    for a token of another key than the connection's, and TooManyProviderTokenUpdates
    for a token change less than `TOKEN_UPDATE_INTERVAL_S` after the connection began
    using its current token. It is off by default so that simple clients (minting a
    token per request, trying several keys) still get their answers; turn it on to
    hold a client to Apple's schedule.
    """

    default_topic: str | None = None

    def __init__(
        self,
        keys: Mapping[str, SigningKey],
        clock: Callable[[], float] = time.time,
        *,
        strict: bool = False,
        revoked: Collection[str] = (),
    ) -> None:
        self._keys = keys
        # Key ids Apple no longer accepts; read at every request, so a key revoked
        # while the connection is open is refused from then on.
        self._revoked = revoked
        self._clock = clock
        self._strict = strict
        self._verified: dict[str, _Verified] = {}
        # The token the connection uses now, since when, and the key of its tokens.
        self._current: str | None = None
        self._current_since = 0.0
        self._key_id: str | None = None

    @property
    def authenticated(self) -> bool:
        return self._current is not None

    def check(self, headers: Mapping[str, str]) -> Reason | None:
        # Apple's reading: no header, or a bearer scheme with nothing after it, is a
        # missing token; any other scheme is a token it cannot accept.
        scheme, _, token = headers.get(Header.AUTHORIZATION, "").partition(" ")
        token = token.strip()
        if not token and scheme.lower() in ("", _BEARER):
            return Reason.MISSING_PROVIDER_TOKEN
        if scheme.lower() != _BEARER:
            return Reason.INVALID_PROVIDER_TOKEN

        verified = self._verified.get(token)
        if verified is None:
            verified = self._verify(token)
            if verified is None:
                return Reason.INVALID_PROVIDER_TOKEN
            self._remember(token, verified)
        if verified.key_id in self._revoked:
            return Reason.INVALID_PROVIDER_TOKEN

        now = self._clock()
        if now - verified.issued_at > TOKEN_LIFETIME_S:
            return Reason.EXPIRED_PROVIDER_TOKEN
        if verified.issued_at - now > TOKEN_CLOCK_SKEW_S:
            return Reason.INVALID_PROVIDER_TOKEN
        if not self._strict:
            self._current = token
            return None
        if self._key_id is not None and verified.key_id != self._key_id:
            return Reason.UNRELATED_KEY_ID_IN_TOKEN
        return self._use(token, verified.key_id, now)

    def _use(self, token: str, key_id: str, now: float) -> Reason | None:
        """Make `token` the connection's current one, if it may change to it now."""
        if token == self._current:
            return None
        if (
            self._current is not None
            and now - self._current_since < TOKEN_UPDATE_INTERVAL_S
        ):
            return Reason.TOO_MANY_PROVIDER_TOKEN_UPDATES
        self._current = token
        self._current_since = now
        self._key_id = key_id
        return None

    def _verify(self, token: str) -> _Verified | None:
        """The token's `iat` and key if its signature, algorithm and issuer are right."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key_id = header.get("kid")
        if not isinstance(key_id, str) or header.get("alg") != _ALGORITHM:
            return None
        signing_key = self._keys.get(key_id)
        if signing_key is None:
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
        return _Verified(issued_at=issued_at, key_id=key_id)

    def _remember(self, token: str, verified: _Verified) -> None:
        if len(self._verified) >= _VERIFIED_TOKENS_KEPT:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = verified


class CertificateAuth:
    """Certificate authentication: the client certificate, verified at the handshake
    against the simulator's client CA, names the one app the connection may push to.

    Apple writes the app's bundle id into the certificate's subject as its UID; the
    app's suffixed topics (`.voip`, `.complication`, ...) are allowed with it.
    """

    authenticated = True

    def __init__(self, topic: str | None) -> None:
        self.default_topic = topic

    def check(self, headers: Mapping[str, str]) -> Reason | None:
        if self.default_topic is None:
            return Reason.BAD_CERTIFICATE
        topic = headers.get(Header.TOPIC)
        if topic and bundle_id_of(topic) != self.default_topic:
            return Reason.TOPIC_DISALLOWED
        return None


def certificate_topic(der: bytes) -> str | None:
    """The bundle id a client certificate was issued for: its subject's UID."""
    certificate = x509.load_der_x509_certificate(der)
    values = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    return str(values[0].value) if values else None
