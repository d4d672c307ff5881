"""Sending notifications to APNs for one app, over one HTTP/2 client.

`send` returns Apple's answer as a value, whatever it says; it raises only when no
answer came (a `DeliveryError`).
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from connector.apns.auth import ProviderToken, load_signing_key
from connector.apns.notification import Notification
from connector.apns.push_types import Header
from connector.errors import ConnectionFailed, DeliveryError, RequestTimedOut
from connector.settings import AppSettings, Auth

log = logging.getLogger(__name__)


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
    return context


class ApnsClient:
    """The HTTP/2 client of one app, with its credentials."""

    def __init__(self, app: AppSettings, *, request_timeout_s: float) -> None:
        self.app = app
        self.token: ProviderToken | None = None
        if app.auth is Auth.TOKEN:
            assert app.key_file and app.key_id and app.team_id
            self.token = ProviderToken(
                load_signing_key(Path(app.key_file)),
                key_id=app.key_id,
                team_id=app.team_id,
            )

        self._http = httpx.AsyncClient(
            http1=False,
            http2=True,
            verify=ssl_context(app),
            base_url=f"https://{app.apns_host}:{app.port}",
            timeout=request_timeout_s,
        )

    async def send(self, notification: Notification) -> ApnsResponse:
        headers = notification.headers
        if self.token is not None:
            headers = {**headers, Header.AUTHORIZATION.value: self.token.header()}

        try:
            response = await self._http.post(
                notification.path, content=notification.body, headers=headers
            )
        except httpx.TimeoutException as exc:
            raise RequestTimedOut(f"no answer from {self.app.apns_host}") from exc
        except (httpx.TransportError, OSError) as exc:
            raise ConnectionFailed(
                f"{self.app.apns_host}:{self.app.port}: {type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{type(exc).__name__}") from exc

        return parse_response(
            response.status_code,
            response.headers.get(Header.ID.value),
            response.content,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
