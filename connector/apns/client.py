"""Sending notifications to APNs for one app, over a pool of HTTP/2 connections.

`send` returns Apple's answer as a value, whatever it says; it raises only when no
answer came (a `DeliveryError`). Answers that speak of the connection rather than the
notification are acted on here: after `ExpiredProviderToken` the connection is
replaced (a new connection, a new token) and the notification resent once; after
`Shutdown` or `IdleTimeout` the connection is retired, and the answer returned for the
retry policy to resend.

Each connection has a provider token of its own, minted when the connection first
sends, so APNs never sees one connection change its token more often than the token's
schedule says.

An app whose client certificate cannot be used is answered here, without contacting
APNs: `CertificateExpired` once the certificate is past its expiry date (at start or
while running), and for `CREDENTIAL_RECHECK_S` after APNs refused the certificate
during the TLS handshake, `CertificateRejected` (or `CertificateExpired`, by the TLS
alert). Such an answer classifies as a configuration problem, so its request fails
at once instead of being resent, and an app with a dead certificate opens at most one
connection per `CREDENTIAL_RECHECK_S`.
"""

from __future__ import annotations

import datetime
import functools
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from connector.apns.auth import (
    ProviderToken,
    load_client_certificate,
    load_signing_key,
)
from connector.apns.notification import Notification
from connector.apns.pool import ConnectionPool
from connector.apns.proxy import parse_proxy_url
from connector.apns.reasons import LocalReason, Reason, certificate_refusal
from connector.apns.transport import ApnsTransport
from connector.errors import ConfigurationError, ConnectionFailed
from connector.settings import AppSettings, Auth
from connector.telemetry.metrics import metrics

log = logging.getLogger(__name__)

# Answers after which the connection they came on is not used again.
_CONNECTION_SPENT = frozenset(
    {Reason.EXPIRED_PROVIDER_TOKEN, Reason.SHUTDOWN, Reason.IDLE_TIMEOUT}
)


class _ErrorBody(msgspec.Struct):
    reason: str | None = None
    timestamp: int | None = None


# After APNs refused the client certificate in the handshake, requests are answered
# without connecting for this long; then one connection may try again.
CREDENTIAL_RECHECK_S = 60.0
# The status APNs gives a request made with a credential it refuses; the client's own
# answers for an unusable certificate carry it.
CREDENTIAL_REFUSED_STATUS = 403

_error_decoder = msgspec.json.Decoder(_ErrorBody)


@dataclass(frozen=True, slots=True)
class ApnsResponse:
    """Apple's answer to one request, or the client's own in Apple's place."""

    status: int
    reason: str | None = None
    apns_id: str | None = None
    # Milliseconds since the epoch at which the token stopped being valid (410 only).
    timestamp_ms: int | None = None
    # Made by the client without contacting APNs: the app's credential is known to
    # be refused (`reason` is a `LocalReason`, `status` the one APNs would give).
    local: bool = False


@dataclass(frozen=True, slots=True)
class CredentialProblem:
    """Why an app's requests cannot be sent now: a reason, and what to do."""

    reason: LocalReason
    detail: str


def parse_response(status: int, apns_id: str | None, body: bytes) -> ApnsResponse:
    if status == 200:
        return ApnsResponse(status=200, apns_id=apns_id)

    try:
        error = _error_decoder.decode(body) if body else _ErrorBody()
    except msgspec.DecodeError:
        # Not Apple's JSON (a proxy's page, say): keep a trace of it as the reason.
        error = _ErrorBody(reason=body[:100].decode("utf-8", "replace"))
    return ApnsResponse(
        status=status,
        reason=error.reason,
        apns_id=apns_id,
        timestamp_ms=error.timestamp if status == 410 else None,
    )


def ssl_context(
    app: AppSettings, now: datetime.datetime | None = None
) -> ssl.SSLContext:
    """The app's TLS settings: the CAs it trusts and its client certificate, if any.

    A `ca_file` that cannot be read as certificates is a ConfigurationError.
    """
    context, _ = _tls_settings(app, now)
    return context


def _tls_settings(
    app: AppSettings, now: datetime.datetime | None
) -> tuple[ssl.SSLContext, datetime.datetime | None]:
    """The app's SSL context, and when its client certificate expires (if any)."""
    context = _trusting(app)
    context.set_alpn_protocols(["h2"])
    expires = None
    if app.auth is Auth.CERTIFICATE:
        expires = load_client_certificate(context, app, now)
    return context, expires


def _trusting(app: AppSettings) -> ssl.SSLContext:
    where = f"apps ({app.bundle_id}).ca_file {app.ca_file}"
    try:
        return ssl.create_default_context(cafile=app.ca_file)
    except FileNotFoundError as exc:
        raise ConfigurationError(f"{where} does not exist") from exc
    # Before OSError, of which it is a kind.
    except ssl.SSLError as exc:
        raise ConfigurationError(f"{where} holds no PEM certificate to trust") from exc
    except OSError as exc:
        raise ConfigurationError(f"{where} cannot be read: {exc.strerror}") from exc


class ApnsClient:
    """The connections of one app, with its credentials."""

    def __init__(
        self,
        app: AppSettings,
        *,
        request_timeout_s: float,
        max_connections: int = 4,
        ping_interval_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self._request_timeout_s = request_timeout_s
        # UNIX seconds, for the certificate's expiry; tests pass their own.
        self._clock = clock
        self._key = None
        if app.auth is Auth.TOKEN:
            assert app.key_file and app.key_id and app.team_id
            # Read now: a bad key must stop the connector before anything connects.
            self._key = load_signing_key(
                Path(app.key_file), f"apps ({app.bundle_id}).key_file"
            )

        context, expires = _tls_settings(
            app, datetime.datetime.fromtimestamp(clock(), datetime.UTC)
        )
        # When the client certificate expires (UNIX seconds); None with tokens.
        self._certificate_expires_at = expires.timestamp() if expires else None
        # Expired at start: `load_client_certificate` has said so.
        self._certificate_expired = (
            expires is not None and expires.timestamp() <= clock()
        )
        # A certificate APNs refused in the handshake, and until when to believe it.
        self._refused: CredentialProblem | None = None
        self._refused_until = 0.0

        self.pool = ConnectionPool(
            host=app.apns_host,
            port=app.port,
            ssl_context=context,
            token_factory=self._new_token if self._key is not None else None,
            max_connections=max_connections,
            connect_timeout_s=request_timeout_s,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=min(ping_interval_s, request_timeout_s),
            proxy=parse_proxy_url(app.proxy_url) if app.proxy_url else None,
        )
        self.transport = ApnsTransport(self.pool, request_timeout_s=request_timeout_s)

    @property
    def token(self) -> ProviderToken | None:
        """The token of the newest connection (each connection has its own)."""
        connections = self.pool.connections
        return connections[-1].token if connections else None

    def _new_token(self) -> ProviderToken:
        assert self._key is not None and self.app.key_id and self.app.team_id
        return ProviderToken(
            self._key,
            key_id=self.app.key_id,
            team_id=self.app.team_id,
            minted=functools.partial(metrics.token_minted, self.app.bundle_id),
        )

    def credential_problem(self) -> CredentialProblem | None:
        """Why the app's requests cannot be sent now, or None when they can."""
        expires_at = self._certificate_expires_at
        if expires_at is not None and self._clock() >= expires_at:
            expired_on = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
            problem = CredentialProblem(
                LocalReason.CERTIFICATE_EXPIRED,
                f"the client certificate of {self.app.bundle_id} expired on "
                f"{expired_on:%Y-%m-%d %H:%M:%S} UTC; renew it",
            )
            if not self._certificate_expired:
                self._certificate_expired = True
                self._stop_using_connections(expired_on)
            return problem
        if self._refused is not None and self._clock() < self._refused_until:
            return self._refused
        return None

    async def send(self, notification: Notification) -> ApnsResponse:
        problem = self.credential_problem()
        if problem is not None:
            return _refused(problem, notification)

        path = notification.path.encode()
        headers = [(k.encode(), v.encode()) for k, v in notification.headers.items()]

        for resend in (False, True):
            try:
                answer = await self.pool.request(
                    path, headers, notification.body, self._request_timeout_s
                )
            except ConnectionFailed as exc:
                problem = self._certificate_refused(exc)
                if problem is None:
                    raise
                return _refused(problem, notification)
            if answer.status == 200:
                return ApnsResponse(status=200, apns_id=answer.apns_id)

            response = parse_response(answer.status, answer.apns_id, answer.body)
            expired = response.reason == Reason.EXPIRED_PROVIDER_TOKEN
            # A fresh token expired at once says the clock is wrong, not the
            # connection: replacing it again would only churn connections.
            if response.reason not in _CONNECTION_SPENT or (expired and resend):
                return response
            self.pool.retire(answer.connection, f"APNs answered {response.reason}")
            if not expired:
                return response
            log.info(
                "provider token expired; resending on a new connection",
                extra={"apns_id": notification.apns_id},
            )
        raise AssertionError("the resend loop always returns")

    def _certificate_refused(self, error: ConnectionFailed) -> CredentialProblem | None:
        """The problem, when `error` says APNs refused the client certificate."""
        if self._certificate_expires_at is None:
            return None
        reason = certificate_refusal(str(error))
        if reason is None:
            return None
        problem = CredentialProblem(
            reason,
            f"APNs refused the client certificate of {self.app.bundle_id} in the "
            f"TLS handshake ({reason.value}); trying again in "
            f"{CREDENTIAL_RECHECK_S:.0f} s",
        )
        if self._refused is None or self._clock() >= self._refused_until:
            log.warning(
                "client certificate refused by APNs",
                extra={"app": self.app.bundle_id, "reason": reason.value},
            )
        self._refused = problem
        self._refused_until = self._clock() + CREDENTIAL_RECHECK_S
        return problem

    def _stop_using_connections(self, expired_on: datetime.datetime) -> None:
        # Expired while running; the same line as at start.
        log.warning(
            "client certificate expired; the app's requests fail until it is renewed",
            extra={
                "app": self.app.bundle_id,
                "not_valid_after": expired_on.isoformat(),
            },
        )
        for connection in list(self.pool.connections):
            self.pool.retire(connection, "the client certificate expired")

    async def aclose(self) -> None:
        await self.pool.aclose()


def _refused(problem: CredentialProblem, notification: Notification) -> ApnsResponse:
    return ApnsResponse(
        status=CREDENTIAL_REFUSED_STATUS,
        reason=problem.reason.value,
        apns_id=notification.apns_id,
        local=True,
    )
