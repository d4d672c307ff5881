"""Reaching APNs through an HTTP proxy, over a CONNECT tunnel.

Where outgoing traffic must pass a proxy, a connection to APNs starts as TCP to the
proxy and one `CONNECT host:port` request. Once the proxy answers 2xx, the socket
carries bytes to and from APNs unchanged: TLS and HTTP/2 run inside it as if the
connection were direct, and the proxy sees neither the token nor the payload.

`open_tunnel` returns the plain socket, for the caller to start TLS on, for example
`loop.create_connection(factory, sock=sock, ssl=context, server_hostname=host)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import urllib.parse
from dataclasses import dataclass

from connector.errors import ConnectionFailed

log = logging.getLogger(__name__)

# A proxy's answer to CONNECT is a status line and a few headers.
MAX_REPLY_BYTES = 8192
_END_OF_HEAD = b"\r\n\r\n"
_DEFAULT_PORT = 80


@dataclass(frozen=True, slots=True)
class ProxyAddress:
    """Where the proxy listens."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"http://{_authority(self.host, self.port)}"


def parse_proxy_url(url: str) -> ProxyAddress:
    """`http://host:port` as a ProxyAddress; ValueError saying what is wrong."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from exc

    if parts.scheme != "http":
        raise ValueError(f"{url!r}: the scheme must be http (a CONNECT proxy)")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{url!r}: proxy credentials are not supported")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: only scheme, host and port are allowed")
    return ProxyAddress(parts.hostname, _DEFAULT_PORT if port is None else port)


async def open_tunnel(
    proxy: ProxyAddress, host: str, port: int, *, timeout_s: float
) -> socket.socket:
    """A socket connected to `host:port` through `proxy`, ready for TLS.

    Raises ConnectionFailed when the proxy cannot be reached, refuses the tunnel or
    does not answer within `timeout_s`.
    """
    target = _authority(host, port)
    sock: socket.socket | None = None
    try:
        async with asyncio.timeout(timeout_s):
            sock = await _connect(proxy)
            await _request_tunnel(sock, proxy, target)
    except TimeoutError as exc:
        _close(sock)
        raise ConnectionFailed(
            f"proxy {proxy}: no tunnel to {target} within {timeout_s} s"
        ) from exc
    except OSError as exc:
        _close(sock)
        raise ConnectionFailed(
            f"proxy {proxy}: {exc.strerror or type(exc).__name__}"
        ) from exc
    except BaseException:
        _close(sock)
        raise

    assert sock is not None
    log.debug("tunnel open", extra={"proxy": str(proxy), "target": target})
    return sock


async def _connect(proxy: ProxyAddress) -> socket.socket:
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    last_error: OSError = OSError(f"{proxy.host} has no address")
    for family, kind, protocol, _, address in addresses:
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise last_error


async def _request_tunnel(
    sock: socket.socket, proxy: ProxyAddress, target: str
) -> None:
    loop = asyncio.get_running_loop()
    request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode("ascii"))

    # Read exactly the answer's head: whatever follows it belongs to TLS.
    head = b""
    while _END_OF_HEAD not in head:
        chunk = await loop.sock_recv(sock, MAX_REPLY_BYTES)
        if not chunk:
            raise ConnectionFailed(f"proxy {proxy}: closed before answering CONNECT")
        head += chunk
        if len(head) > MAX_REPLY_BYTES:
            raise ConnectionFailed(
                f"proxy {proxy}: answer over {MAX_REPLY_BYTES} bytes"
            )
    if not head.endswith(_END_OF_HEAD):
        raise ConnectionFailed(f"proxy {proxy}: sent data after its answer to CONNECT")

    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = status_line.partition(" ")
    status = rest[:3]
    if not version.startswith("HTTP/1.") or not status.isdigit():
        raise ConnectionFailed(
            f"proxy {proxy}: answered {status_line[:80]!r}, not HTTP"
        )
    if not status.startswith("2"):
        raise ConnectionFailed(
            f"proxy {proxy}: refused the tunnel to {target}: {rest[:80]}"
        )


def _authority(host: str, port: int) -> str:
    # An IPv6 literal is bracketed, so its colons are not read as the port's.
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    return f"{host}:{port}"


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
