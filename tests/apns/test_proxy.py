"""Reaching APNs through an HTTP CONNECT proxy: the tunnel, its failures, the setting."""

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest

from connector.apns.auth import ProviderToken, load_signing_key
from connector.apns.proxy import ProxyAddress, open_tunnel, parse_proxy_url
from connector.errors import ConfigurationError, ConnectionFailed
from connector.settings import load
from connector.simulator.server import Simulator
from connector.stack import KEY_ID, TEAM_ID, Credentials

DEVICE = "cd" * 32


class ConnectProxy:
    """A tiny CONNECT proxy: answers as told, then relays bytes both ways."""

    def __init__(self, answer: list[bytes], then: str = "relay") -> None:
        # The answer's pieces, written one at a time to test a reader's patience,
        # and what follows: "relay", "hold" (until the client leaves) or "close".
        self.answer = answer
        self.then = then
        self.requests: list[bytes] = []
        self.handlers: set[asyncio.Task[None]] = set()

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            for piece in self.answer:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.02)
            if self.then == "hold":
                await reader.read()
            if self.then == "relay":
                host, _, port = head.split(b" ")[1].decode().rpartition(":")
                upstream = await asyncio.open_connection(host, int(port))
                await asyncio.gather(
                    _relay(reader, upstream[1]), _relay(upstream[0], writer)
                )
        finally:
            writer.close()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def running(proxy: ConnectProxy) -> AsyncIterator[ProxyAddress]:
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0)
    try:
        yield ProxyAddress("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        for handler in proxy.handlers:
            handler.cancel()
        await asyncio.gather(*proxy.handlers, return_exceptions=True)


async def push_through(
    proxy: ProxyAddress, apns: Simulator, credentials: Credentials
) -> int:
    """One push over TLS and HTTP/2 inside the tunnel; the status Apple answers."""
    sock = await open_tunnel(proxy, apns.host, apns.port, timeout_s=5)
    context = ssl.create_default_context(cafile=credentials.cert_file)
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=apns.host
    )
    token = ProviderToken(
        load_signing_key(credentials.key_file), key_id=KEY_ID, team_id=TEAM_ID
    )
    connection = h2.connection.H2Connection(h2.config.H2Configuration())
    connection.initiate_connection()
    connection.send_headers(
        1,
        [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", apns.host),
            (":path", f"/3/device/{DEVICE}"),
            ("authorization", token.header()),
            ("apns-push-type", "alert"),
            ("apns-topic", "com.example.proxied"),
        ],
    )
    connection.send_data(1, b'{"aps":{"alert":"hi"}}', end_stream=True)
    writer.write(connection.data_to_send())

    status = 0
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data, "the tunnel closed before the answer"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                if isinstance(event, h2.events.StreamEnded):
                    return status
            writer.write(connection.data_to_send())
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        [b"HTTP/1.1 200 Connection established\r\n\r\n"],
        # The head in pieces: the tunnel must wait for all of it before TLS starts.
        [b"HTTP/1.1 200 OK\r\n", b"Proxy-Agent: tiny\r\n", b"\r\n"],
    ],
    ids=["whole", "in pieces"],
)
async def test_a_push_goes_through_the_tunnel(
    credentials: Credentials, answer: list[bytes]
) -> None:
    proxy = ConnectProxy(answer)
    async with (
        Simulator(tls=credentials.tls, signing_keys=credentials.signing_keys) as apns,
        running(proxy) as address,
    ):
        status = await push_through(address, apns, credentials)

    assert status == 200
    assert [r.path for r in apns.received] == [f"/3/device/{DEVICE}"]
    target = f"127.0.0.1:{apns.port}"
    assert proxy.requests == [
        f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()
    ]


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            [b"HTTP/1.1 403 Forbidden\r\n\r\n"],
            "proxy {proxy}: refused the tunnel to 127.0.0.1:2197: 403 Forbidden",
        ),
        ([], "proxy {proxy}: closed before answering CONNECT"),
        (
            [b"SSH-2.0-OpenSSH\r\n\r\n"],
            "proxy {proxy}: answered 'SSH-2.0-OpenSSH', not HTTP",
        ),
        (
            [b"HTTP/1.1 200 OK\r\n\r\nextra"],
            "proxy {proxy}: sent data after its answer to CONNECT",
        ),
    ],
    ids=["refused", "closed", "not http", "data after the head"],
)
async def test_a_tunnel_the_proxy_will_not_make_fails_naming_why(
    answer: list[bytes], message: str
) -> None:
    proxy = ConnectProxy(answer, then="close")
    async with running(proxy) as address:
        with pytest.raises(ConnectionFailed) as raised:
            await open_tunnel(address, "127.0.0.1", 2197, timeout_s=5)
    assert str(raised.value) == message.format(proxy=address)


async def test_a_silent_proxy_times_out() -> None:
    proxy = ConnectProxy([b"HTTP/1.1 200 OK\r\n"], then="hold")
    async with running(proxy) as address:
        with pytest.raises(ConnectionFailed) as raised:
            await open_tunnel(address, "127.0.0.1", 2197, timeout_s=0.2)
    assert str(raised.value) == (
        f"proxy {address}: no tunnel to 127.0.0.1:2197 within 0.2 s"
    )


async def test_an_unreachable_proxy_fails() -> None:
    # A port just closed: nothing listens there.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()

    with pytest.raises(ConnectionFailed) as raised:
        await open_tunnel(
            ProxyAddress("127.0.0.1", port), "127.0.0.1", 2197, timeout_s=5
        )
    assert str(raised.value).startswith(
        f"proxy http://127.0.0.1:{port}: Connect call failed"
    )


def test_proxy_urls_are_read_and_ipv6_targets_bracketed() -> None:
    assert parse_proxy_url("http://proxy.internal:3128") == ProxyAddress(
        "proxy.internal", 3128
    )
    assert parse_proxy_url("http://proxy/") == ProxyAddress("proxy", 80)
    assert str(ProxyAddress("::1", 3128)) == "http://[::1]:3128"


@pytest.mark.parametrize(
    ("proxy_url", "message"),
    [
        (
            "https://proxy:3128",
            "'https://proxy:3128': the scheme must be http (a CONNECT proxy)",
        ),
        ("http://:3128", "'http://:3128' names no host"),
        (
            "http://user:pw@proxy:3128",
            "'http://user:pw@proxy:3128': proxy credentials are not supported",
        ),
        (
            "http://proxy:3128/path",
            "'http://proxy:3128/path': only scheme, host and port are allowed",
        ),
        (
            "http://proxy:99999",
            "'http://proxy:99999' is not a URL: Port out of range 0-65535",
        ),
    ],
)
def test_a_bad_proxy_setting_stops_the_start(
    tmp_path: Path, proxy_url: str, message: str
) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(
        f"""[[apps]]
bundle_id = "com.example.proxied"
key_file = "AuthKey.p8"
key_id = "{KEY_ID}"
team_id = "{TEAM_ID}"
proxy_url = "{proxy_url}"
"""
    )
    with pytest.raises(ConfigurationError) as raised:
        load(config, environ={})
    assert str(raised.value) == (f"apps[0] (com.example.proxied).proxy_url: {message}")


def test_apples_hosts_are_reached_only_on_443_or_2197(tmp_path: Path) -> None:
    config = tmp_path / "connector.toml"
    config.write_text(
        f"""[[apps]]
bundle_id = "com.example.app"
key_file = "AuthKey.p8"
key_id = "{KEY_ID}"
team_id = "{TEAM_ID}"
port = 8443
"""
    )
    with pytest.raises(ConfigurationError) as raised:
        load(config, environ={})
    assert str(raised.value) == (
        "apps[0] (com.example.app).port: Apple listens on 443 or 2197, not 8443"
    )
    config.write_text(config.read_text().replace("8443", "2197"))
    assert load(config, environ={}).apps[0].port == 2197
