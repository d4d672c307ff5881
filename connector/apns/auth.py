"""How the connector proves to APNs that it speaks for an app.

Token authentication: ES256 JWTs signed with the app's `.p8` key. APNs rejects a token
older than an hour and answers TooManyProviderTokenUpdates to a connection that changes
its token more often than every 20 minutes, so each connection has its own
`ProviderToken`: minted when the connection first needs it, reused for every request,
replaced after `ROTATE_AFTER_S`, and never replaced sooner than
`MIN_ROTATION_INTERVAL_S` after it was minted.

Certificate authentication: a `.p12` file (usually with a password) or a PEM
certificate and key, presented as the TLS client certificate; `load_client_certificate`
puts it into an app's SSL context. A file that cannot be read as one stops the
connector at start; a certificate past its expiry date does not: it is only one
app's problem, and a certificate can expire while the connector runs as well, so the
APNs client checks the date before each send.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import secrets
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    pkcs12,
)
from cryptography.x509.oid import NameOID

from connector.errors import ConfigurationError
from connector.redaction import MASK
from connector.settings import AppSettings

log = logging.getLogger(__name__)

ROTATE_AFTER_S = 50 * 60
MIN_ROTATION_INTERVAL_S = 20 * 60

_PEM_MARKER = b"-----BEGIN"
_PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)
_ClientKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_CLIENT_KEY_TYPES = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)


def load_signing_key(
    path: Path, setting: str = "key file"
) -> ec.EllipticCurvePrivateKey:
    """Read a `.p8` key; a missing, unreadable or wrong key is a configuration error
    whose message starts with `setting` (such as "apps (com.example).key_file")."""
    where = f"{setting} {path}"
    try:
        pem = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist") from exc
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror}") from exc

    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"{where} is not a PEM private key") from exc

    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ConfigurationError(f"{where} is not a P-256 (ES256) key")
    return key


class ProviderToken:
    """The `authorization` header value of one connection, minted lazily."""

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        key_id: str,
        team_id: str,
        clock: Callable[[], float] = time.time,
        minted: Callable[[], None] | None = None,
    ) -> None:
        self._key = key
        self._key_id = key_id
        self._team_id = team_id
        self._clock = clock
        # Told of every token signed (the metrics count them).
        self._minted = minted
        self._header: str | None = None
        self._issued_at = 0.0
        self.mints = 0

    @property
    def issued_at(self) -> float | None:
        """UNIX seconds at which the current token was minted; None before the first."""
        return self._issued_at if self._header is not None else None

    def header(self) -> str:
        """`bearer <jwt>`: the current token, minted first if none or too old."""
        now = self._clock()
        if self._header is None or now - self._issued_at >= ROTATE_AFTER_S:
            self._mint(now)
        assert self._header is not None
        return self._header

    def invalidate(self) -> bool:
        """Forget the token so the next request mints one, if the schedule allows.

        False when the token is younger than `MIN_ROTATION_INTERVAL_S`: a new one on
        this connection would be refused, so the caller needs a new connection (and
        a new `ProviderToken`) instead.
        """
        if self._header is None:
            return True
        if self._clock() - self._issued_at < MIN_ROTATION_INTERVAL_S:
            return False
        self._header = None
        return True

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
        if self._minted is not None:
            self._minted()

    def __repr__(self) -> str:
        return (
            f"ProviderToken(key_id={self._key_id!r}, team_id={self._team_id!r}, "
            f"token={MASK})"
        )


def load_client_certificate(
    context: ssl.SSLContext,
    app: AppSettings,
    now: datetime.datetime | None = None,
) -> datetime.datetime:
    """Make `context` present the app's certificate; return when it expires.

    The file is a `.p12` or PEM; a PEM key may sit in the certificate file or in
    `certificate_key_file`. The password, when there is one, is the first line of
    `certificate_password_file`. A file that cannot be used is a ConfigurationError:
    unreadable, a wrong password, a key that is not the certificate's, a certificate
    not valid yet. A certificate that expired before `now` (default: the current
    time) is loaded all the same and logged as a warning; its app cannot send, and
    the others can (the APNs client answers its requests itself).
    """
    assert app.certificate_file is not None
    where = f"apps ({app.bundle_id}).certificate_file {app.certificate_file}"
    content = _read(Path(app.certificate_file), where)
    password = None
    if app.certificate_password_file is not None:
        password = _read_password(Path(app.certificate_password_file), app.bundle_id)

    if _PEM_MARKER in content:
        key_pem = content
        if app.certificate_key_file is not None:
            key_where = (
                f"apps ({app.bundle_id}).certificate_key_file "
                f"{app.certificate_key_file}"
            )
            key_pem = _read(Path(app.certificate_key_file), key_where)
        chain = _pem_certificates(content, where)
        key = _pem_key(key_pem, password, where)
    else:
        key, chain = _pkcs12(content, password, where)

    now = now or datetime.datetime.now(datetime.UTC)
    _check_pair(chain[0], key, where, now)
    _load(context, chain, key)
    expires = chain[0].not_valid_after_utc
    fields = {
        "app": app.bundle_id,
        "subject_uid": _subject_uid(chain[0]),
        "not_valid_after": expires.isoformat(),
    }
    if expires <= now:
        log.warning(
            "client certificate expired; the app's requests fail until it is renewed",
            extra=fields,
        )
    else:
        log.info("client certificate loaded", extra=fields)
    return expires


def _read(path: Path, where: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist") from exc
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror}") from exc


def _read_password(path: Path, bundle_id: str) -> bytes:
    where = f"apps ({bundle_id}).certificate_password_file {path}"
    # The first line, so a file written by `echo` works.
    lines = _read(path, where).splitlines()
    return lines[0] if lines else b""


def _pem_certificates(content: bytes, where: str) -> list[x509.Certificate]:
    try:
        # The app's certificate first, then any intermediates.
        return x509.load_pem_x509_certificates(content)
    except ValueError as exc:
        raise ConfigurationError(f"{where} holds no PEM certificate") from exc


def _pem_key(content: bytes, password: bytes | None, where: str) -> _ClientKey:
    found = _PEM_KEY.search(content)
    if found is None:
        raise ConfigurationError(
            f"{where}: no PEM private key; put it in the file or name "
            "certificate_key_file"
        )
    pem = found.group(0)
    try:
        key = load_pem_private_key(pem, password=password)
    except TypeError as exc:
        # The key is not encrypted although a password was given, or the other way
        # round: only the second is a problem.
        if password is None:
            raise ConfigurationError(
                f"{where}: the private key is encrypted; name certificate_password_file"
            ) from exc
        key = load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise ConfigurationError(
            f"{where}: the private key cannot be read (wrong password?)"
        ) from exc
    if not isinstance(key, _CLIENT_KEY_TYPES):
        raise ConfigurationError(f"{where}: the private key is not RSA or EC")
    return key


def _pkcs12(
    content: bytes, password: bytes | None, where: str
) -> tuple[_ClientKey, list[x509.Certificate]]:
    try:
        key, certificate, extra = pkcs12.load_key_and_certificates(content, password)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{where} cannot be read as PKCS#12 or PEM (wrong password?)"
        ) from exc
    if certificate is None or key is None:
        raise ConfigurationError(f"{where}: the .p12 lacks the certificate or its key")
    if not isinstance(key, _CLIENT_KEY_TYPES):
        raise ConfigurationError(f"{where}: the private key is not RSA or EC")
    return key, [certificate, *extra]


def _check_pair(
    certificate: x509.Certificate,
    key: _ClientKey,
    where: str,
    now: datetime.datetime,
) -> None:
    if _public_bytes(certificate.public_key()) != _public_bytes(key.public_key()):
        raise ConfigurationError(f"{where}: the private key is not the certificate's")

    # Expired is not checked here: see `load_client_certificate`.
    if certificate.not_valid_before_utc > now:
        raise ConfigurationError(
            f"{where}: the certificate is valid only from "
            f"{certificate.not_valid_before_utc:%Y-%m-%d}"
        )


def _load(
    context: ssl.SSLContext, chain: list[x509.Certificate], key: _ClientKey
) -> None:
    # The ssl module reads certificates only from files. The key is written
    # encrypted under a password that lives only in this call, in a directory only
    # this user can read, and removed at once.
    one_time = secrets.token_bytes(32)
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pem += key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(one_time),
    )
    with tempfile.TemporaryDirectory(prefix="apns-cert-") as directory:
        path = Path(directory) / "client.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
        context.load_cert_chain(path, password=one_time)


def _public_bytes(key: object) -> bytes:
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _subject_uid(certificate: x509.Certificate) -> str | None:
    """The topic Apple writes into a push certificate's subject (its UID)."""
    values = certificate.subject.get_attributes_for_oid(NameOID.USER_ID)
    return str(values[0].value) if values else None
