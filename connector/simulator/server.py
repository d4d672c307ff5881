"""The APNs simulator: a TLS HTTP/2 server that answers pushes the way Apple does.

Users start one in their integration tests, point their provider at it, and inspect
`received` afterwards::

    async with Simulator(tls=identity, signing_keys={key_id: (team_id, pem)}) as apns:
        ...  # send to f"https://127.0.0.1:{apns.port}"
        assert apns.received[0].status == 200

The parts: `rules` decides each answer, `auth` checks credentials per connection,
`connection` speaks HTTP/2, and this module listens and keeps the record.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from connector.apns.reasons import Reason
from connector.simulator.auth import (
    CertificateAuth,
    ConnectionAuth,
    SigningKey,
    TokenAuth,
    certificate_topic,
    load_public_key,
)
from connector.simulator.connection import ALPN_H2, SimulatorConnection
from connector.simulator.credentials import TlsIdentity
from connector.simulator.faults import Faults
from connector.simulator.received import ReceivedRequest
from connector.simulator.rules import Rules

logger = logging.getLogger(__name__)

# After its GOAWAY and TLS close_notify are sent, a connection waits this long for the
# client's close_notify. An idle HTTP/2 client is often not reading and never answers;
# nothing it could say would change anything, so the wait is kept short.
_TLS_SHUTDOWN_TIMEOUT_S = 0.1
# The last resort of stop() for connections that still have not gone.
_CLOSE_TIMEOUT_S = 5.0


class Simulator:
    """An APNs look-alike listening on `host:port` with TLS and HTTP/2.

    `signing_keys` maps a key id to its team id and public key PEM; `unregistered`
    maps device tokens to the time (ms) Apple would report them dead since;
    `injected` makes a device token answer a chosen reason; `topics` limits the
    bundle ids accepted (None accepts any). With `client_ca`, a client may present a
    certificate issued by that CA instead of tokens (see `CertificateAuth`).
    `strict_tokens` holds token clients to Apple's per-connection rules (one key, a
    token change at most every 20 minutes); `clock` (UNIX seconds) is what token ages
    are measured against. `revoked_keys` are key ids of `signing_keys` that Apple no
    longer accepts: tokens they sign are answered 403 InvalidProviderToken.
    """

    def __init__(
        self,
        *,
        tls: TlsIdentity,
        host: str = "127.0.0.1",
        port: int = 0,
        signing_keys: Mapping[str, tuple[str, bytes]] = {},
        unregistered: Mapping[str, int] = {},
        injected: Mapping[str, Reason] = {},
        topics: Collection[str] | None = None,
        max_concurrent_streams: int = 1000,
        client_ca: Path | None = None,
        strict_tokens: bool = False,
        clock: Callable[[], float] = time.time,
        faults: Faults | None = None,
        revoked_keys: Collection[str] = (),
    ) -> None:
        if max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        self.host = host
        self.port = port
        self.received: list[ReceivedRequest] = []
        self._keys = {
            key_id: SigningKey(team_id=team_id, public_key=load_public_key(pem))
            for key_id, (team_id, pem) in signing_keys.items()
        }
        self._revoked_keys = set(revoked_keys)
        self._rules = Rules(unregistered=unregistered, injected=injected, topics=topics)
        self._ssl_context = _server_ssl_context(tls, client_ca)
        self._strict_tokens = strict_tokens
        self._clock = clock
        self._max_concurrent_streams = max_concurrent_streams
        # Misbehaviours to put on (see `faults`); tests may change them at any time.
        self.faults = faults or Faults()
        # For each complete request, how many streams were open on its connection.
        self.open_streams_seen: list[int] = []
        self._server: asyncio.Server | None = None
        self._connections: set[SimulatorConnection] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._connections_made = 0

    @property
    def url(self) -> str:
        """The base URL a provider sends to, valid once started."""
        return f"https://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_connection,
            self.host,
            self.port,
            ssl=self._ssl_context,
            ssl_shutdown_timeout=_TLS_SHUTDOWN_TIMEOUT_S,
        )

        # A host name resolving to several addresses gets one socket each; with port 0
        # they may differ, and the first is the one reported.
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("simulator listening host=%s port=%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()

        for connection in list(self._connections):
            connection.close()
        await self._wait_closed()

        await server.wait_closed()
        logger.info("simulator stopped port=%d", self.port)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def register_unregistered(self, token: str, timestamp_ms: int) -> None:
        """From now on answer `token` with 410 Unregistered and this timestamp."""
        self._rules.register_unregistered(token, timestamp_ms)

    def inject(self, token: str, reason: Reason) -> None:
        """From now on answer `token` with `reason`."""
        self._rules.inject(token, reason)

    def add_signing_key(self, key_id: str, team_id: str, pem: bytes) -> None:
        """From now on accept tokens signed by this key (public PEM or `.p8`), on
        connections already open too, as when a team makes a new key."""
        self._keys[key_id] = SigningKey(
            team_id=team_id, public_key=load_public_key(pem)
        )
        self._revoked_keys.discard(key_id)

    def revoke_key(self, key_id: str) -> None:
        """From now on answer tokens signed by `key_id` with 403
        InvalidProviderToken, on connections already open too, as Apple does once a
        key is revoked in the developer account."""
        self._revoked_keys.add(key_id)

    def announce_stream_limit(self, limit: int) -> None:
        """Lower or raise MAX_CONCURRENT_STREAMS on every connection, now and later."""
        self._max_concurrent_streams = limit
        for connection in list(self._connections):
            connection.announce_stream_limit(limit)

    def send_goaway(self, debug_data: bytes = b"") -> None:
        """GOAWAY on every open connection, naming the newest stream each received."""
        for connection in list(self._connections):
            connection.send_goaway(debug=debug_data)

    def drop_connections(self) -> None:
        """Cut every open connection without a word."""
        for connection in list(self._connections):
            connection.abort()

    def _new_connection(self) -> SimulatorConnection:
        self._connections_made += 1
        return SimulatorConnection(
            connection_id=self._connections_made,
            rules=self._rules,
            auth_for=self._auth_for,
            max_concurrent_streams=self._max_concurrent_streams,
            record=self.received.append,
            opened=self._opened,
            closed=self._closed,
            faults=self.faults,
            open_streams_seen=self.open_streams_seen,
        )

    def _opened(self, connection: SimulatorConnection) -> None:
        self._connections.add(connection)
        self._no_connections.clear()

    def _closed(self, connection: SimulatorConnection) -> None:
        self._connections.discard(connection)
        if not self._connections:
            self._no_connections.set()

    def _auth_for(self, transport: asyncio.Transport) -> ConnectionAuth:
        # A certificate, if the client presented one, has been verified against the
        # client CA by the handshake; without one, the connection uses tokens.
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        if der:
            return CertificateAuth(certificate_topic(der))
        return TokenAuth(
            self._keys,
            self._clock,
            strict=self._strict_tokens,
            revoked=self._revoked_keys,
        )

    async def _wait_closed(self) -> None:
        """Wait for the connections' TLS goodbyes, cutting off the slow ones."""
        try:
            await asyncio.wait_for(self._no_connections.wait(), _CLOSE_TIMEOUT_S)
        except TimeoutError:
            logger.warning("connections aborted count=%d", len(self._connections))
            for connection in list(self._connections):
                connection.abort()
            await self._no_connections.wait()


def _server_ssl_context(tls: TlsIdentity, client_ca: Path | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_path, tls.key_path)
    if client_ca is not None:
        # Optional: token clients present no certificate and are still welcome.
        context.verify_mode = ssl.CERT_OPTIONAL
        context.load_verify_locations(client_ca)
    context.set_alpn_protocols([ALPN_H2])
    return context
