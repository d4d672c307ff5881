"""An httpx transport of ours: httpx's request and response types over our HTTP/2 pool.

`httpx.AsyncClient(transport=ApnsTransport(pool))` sends through the connection pool,
with its stream budgets, PINGs, GOAWAY handling and resends, instead of httpcore. The
connector itself hands requests to the pool directly: httpx's client machinery costs
more per request than the HTTP/2 work (see `bench/README.md`), while its types stay
the interface for anyone who wants them.

Our errors become httpx's here, with ours chained as the cause, so an httpx client
behaves as with any transport.
"""

from __future__ import annotations

import httpx

from connector.apns.pool import ConnectionPool
from connector.errors import ConnectionFailed, NotProcessed, RequestTimedOut

# Connection-specific headers have no place in HTTP/2 (RFC 9113, 8.2.2); httpx adds
# some of them for HTTP/1.1, and the pool adds the pseudo-headers itself.
_NOT_FORWARDED = frozenset(
    {b"host", b"connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)


class ApnsTransport(httpx.AsyncBaseTransport):
    """Sends each httpx request on a stream of the pool's connections."""

    def __init__(self, pool: ConnectionPool, *, request_timeout_s: float) -> None:
        self.pool = pool
        self._request_timeout_s = request_timeout_s

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            raise httpx.UnsupportedProtocol(
                f"APNs takes POST requests only, not {request.method}", request=request
            )
        body = await request.aread()
        headers = [
            (name.lower(), value)
            for name, value in request.headers.raw
            if name.lower() not in _NOT_FORWARDED
        ]
        timeout_s = request.extensions.get("timeout", {}).get(
            "read", self._request_timeout_s
        )

        try:
            answer = await self.pool.request(
                request.url.raw_path,
                headers,
                body,
                timeout_s or self._request_timeout_s,
            )
        except RequestTimedOut as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except (ConnectionFailed, NotProcessed) as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

        response_headers = []
        if answer.apns_id is not None:
            response_headers.append((b"apns-id", answer.apns_id.encode()))
        return httpx.Response(
            answer.status,
            headers=response_headers,
            content=answer.body,
            request=request,
            extensions={"http_version": b"HTTP/2"},
        )

    async def aclose(self) -> None:
        await self.pool.aclose()
