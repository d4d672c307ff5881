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
"""

from __future__ import annotations

import logging
import ssl
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
from connector.apns.reasons import Reason
from connector.apns.transport import ApnsTransport
from connector.settings import AppSettings, Auth

log = logging.getLogger(__name__)

# Answers after which the connection they came on is not used again.
_CONNECTION_SPENT = frozenset(
    {Reason.EXPIRED_PROVIDER_TOKEN, Reason.SHUTDOWN, Reason.IDLE_TIMEOUT}
)


class _ErrorBody(msgspec.Struct):
    reason: str | None = None
    timestamp: int | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


@dataclass(frozen=True, slots=True)
class ApnsResponse:
    """Apple's answer to one request."""

    status: int
    reason: str | None = None
    apns_id: str | None = None
    # Milliseconds since the epoch at which the token stopped being valid (410 only).
    timestamp_ms: int | None = None


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


def ssl_context(app: AppSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=app.ca_file)
    context.set_alpn_protocols(["h2"])
    if app.auth is Auth.CERTIFICATE:
        load_client_certificate(context, app)
    return context


class ApnsClient:
    """The connections of one app, with its credentials."""

    def __init__(
        self,
        app: AppSettings,
        *,
        request_timeout_s: float,
        max_connections: int = 4,
        ping_interval_s: float = 60.0,
    ) -> None:
        self.app = app
        self._request_timeout_s = request_timeout_s
        self._key = None
        if app.auth is Auth.TOKEN:
            assert app.key_file and app.key_id and app.team_id
            # Read now: a bad key must stop the connector before anything connects.
            self._key = load_signing_key(Path(app.key_file))

        self.pool = ConnectionPool(
            host=app.apns_host,
            port=app.port,
            ssl_context=ssl_context(app),
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
            self._key, key_id=self.app.key_id, team_id=self.app.team_id
        )

    async def send(self, notification: Notification) -> ApnsResponse:
        path = notification.path.encode()
        headers = [(k.encode(), v.encode()) for k, v in notification.headers.items()]

        for resend in (False, True):
            answer = await self.pool.request(
                path, headers, notification.body, self._request_timeout_s
            )
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

    async def aclose(self) -> None:
        await self.pool.aclose()
