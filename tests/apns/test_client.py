"""The APNs client's own answers for credentials APNs would refuse, the TLS settings
it reads at start, and the provider tokens it counts."""

from __future__ import annotations

import asyncio
import datetime
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from cryptography import x509

from connector import stack
from connector.apns.client import (
    CREDENTIAL_RECHECK_S,
    ApnsClient,
    ApnsResponse,
    CredentialProblem,
)
from connector.apns.notification import Notification, prepare
from connector.apns.reasons import LocalReason, Verdict, classify
from connector.errors import ConfigurationError
from connector.events import NotificationRequest
from connector.settings import AppSettings, Auth
from connector.simulator.credentials import (
    CertificateAuthority,
    ClientCertificate,
    write_certificate_authority,
    write_client_certificate,
)
from connector.simulator.server import Simulator
from connector.telemetry.metrics import metrics

CERT_APP = "com.example.certified"
EXPIRED_WARNING = (
    "client certificate expired; the app's requests fail until it is renewed"
)


class Clock:
    """UNIX seconds that a test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return write_certificate_authority(tmp_path_factory.mktemp("ca"))


def certificate_app(
    issued: ClientCertificate, port: int, credentials: stack.Credentials
) -> AppSettings:
    return AppSettings(
        bundle_id=CERT_APP,
        auth=Auth.CERTIFICATE,
        certificate_file=str(issued.p12_path),
        certificate_password_file=str(issued.password_path),
        host="127.0.0.1",
        port=port,
        ca_file=str(credentials.cert_file),
    )


def token_app(
    bundle_id: str, port: int, credentials: stack.Credentials, **changes: str
) -> AppSettings:
    fields = {
        "bundle_id": bundle_id,
        "key_file": str(credentials.key_file),
        "key_id": stack.KEY_ID,
        "team_id": stack.TEAM_ID,
        "host": "127.0.0.1",
        "port": port,
        "ca_file": str(credentials.cert_file),
        **changes,
    }
    return AppSettings(**fields)  # type: ignore[arg-type]


def notification(topic: str = CERT_APP) -> Notification:
    prepared = prepare(
        NotificationRequest(
            id=f"client-{secrets.token_hex(4)}",
            device_token=secrets.token_hex(32),
            topic=topic,
            aps={"alert": "hi"},
        )
    )
    assert isinstance(prepared, Notification)
    return prepared


def expiry_of(issued: ClientCertificate) -> datetime.datetime:
    certificate = x509.load_pem_x509_certificate(issued.cert_path.read_bytes())
    return certificate.not_valid_after_utc


def refused(reason: LocalReason, note: Notification) -> ApnsResponse:
    return ApnsResponse(403, reason.value, note.apns_id, local=True)


def expired_warnings(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str]]:
    return [
        (r.getMessage(), r.__dict__["app"], r.__dict__["not_valid_after"])
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage() == EXPIRED_WARNING
    ]


# A certificate past its date


async def test_an_expired_certificate_is_a_warning_at_start_and_fails_unsent(
    credentials: stack.Credentials,
    authority: CertificateAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    expired = write_client_certificate(
        authority, tmp_path, CERT_APP, valid_for=-datetime.timedelta(days=1)
    )
    expired_on = expiry_of(expired)
    notes = [notification() for _ in range(3)]

    async with Simulator(tls=credentials.tls, client_ca=authority.cert_path) as apns:
        with caplog.at_level(logging.INFO):
            client = ApnsClient(
                certificate_app(expired, apns.port, credentials), request_timeout_s=5
            )
            try:
                answers = [await client.send(note) for note in notes]
                problem = client.credential_problem()
            finally:
                await client.aclose()

    assert answers == [refused(LocalReason.CERTIFICATE_EXPIRED, n) for n in notes]
    assert classify(403, "CertificateExpired") is Verdict.CONFIGURATION
    assert problem == CredentialProblem(
        LocalReason.CERTIFICATE_EXPIRED,
        f"the client certificate of {CERT_APP} expired on "
        f"{expired_on:%Y-%m-%d %H:%M:%S} UTC; renew it",
    )
    # Nothing reached APNs, not even a connection.
    assert (apns.received, client.pool.opened) == ([], 0)
    # Said once, at start, naming the app and the date; never the key.
    assert expired_warnings(caplog) == [
        (EXPIRED_WARNING, CERT_APP, expired_on.isoformat())
    ]
    assert not any("PRIVATE KEY" in str(r.__dict__) for r in caplog.records)


async def test_a_certificate_that_expires_while_running_stops_being_used(
    credentials: stack.Credentials,
    authority: CertificateAuthority,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issued = write_client_certificate(authority, tmp_path, CERT_APP)
    expires = expiry_of(issued)
    clock = Clock(time.time())
    before, after = notification(), notification()

    async with Simulator(tls=credentials.tls, client_ca=authority.cert_path) as apns:
        with caplog.at_level(logging.INFO):
            client = ApnsClient(
                certificate_app(issued, apns.port, credentials),
                request_timeout_s=5,
                clock=clock,
            )
            try:
                delivered = await client.send(before)
                clock.now = expires.timestamp() + 1
                failed = await client.send(after)
                async with asyncio.timeout(5):
                    while client.pool.connections:
                        await asyncio.sleep(0.01)
            finally:
                await client.aclose()

    assert delivered == ApnsResponse(200, apns_id=before.apns_id)
    assert failed == refused(LocalReason.CERTIFICATE_EXPIRED, after)
    assert [r.apns_id for r in apns.received] == [before.apns_id]
    assert client.pool.opened == 1
    assert expired_warnings(caplog) == [
        (EXPIRED_WARNING, CERT_APP, expires.isoformat())
    ]


# A certificate APNs refuses in the TLS handshake


class RefusingServer:
    """A TLS server that verifies client certificates against `authority` and, as
    APNs does, answers one it refuses with a TLS alert (the simulator, on asyncio's
    TLS, closes without sending the alert)."""

    def __init__(self, credentials: stack.Credentials, authority: Path) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(
            credentials.tls.cert_path, credentials.tls.key_path
        )
        self._context.verify_mode = ssl.CERT_REQUIRED
        self._context.load_verify_locations(authority)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self.refused: list[str] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            raw.settimeout(5)
            try:
                with self._context.wrap_socket(raw, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                self.refused.append(type(exc).__name__)
            finally:
                raw.close()


@pytest.fixture
def refusing(
    credentials: stack.Credentials, authority: CertificateAuthority
) -> Iterator[RefusingServer]:
    with RefusingServer(credentials, authority.cert_path) as server:
        yield server


async def test_a_certificate_refused_in_the_handshake_fails_requests_and_waits(
    credentials: stack.Credentials,
    authority: CertificateAuthority,
    refusing: RefusingServer,
    tmp_path: Path,
) -> None:
    # Expired by the server's clock, not yet by the client's (it runs 3 hours late).
    expired = write_client_certificate(
        authority, tmp_path, CERT_APP, valid_for=-datetime.timedelta(days=1)
    )
    clock = Clock(time.time() - 3 * 3600)
    client = ApnsClient(
        certificate_app(expired, refusing.port, credentials),
        request_timeout_s=5,
        clock=clock,
    )
    first, again, later = notification(), notification(), notification()
    try:
        answers = [await client.send(first), await client.send(again)]
        connections_then = refusing.accepted
        clock.now += CREDENTIAL_RECHECK_S
        answers.append(await client.send(later))
        # The server's thread notes a refusal after its alert has gone out.
        async with asyncio.timeout(5):
            while len(refusing.refused) < refusing.accepted:
                await asyncio.sleep(0.01)
    finally:
        await client.aclose()

    assert answers == [
        refused(LocalReason.CERTIFICATE_EXPIRED, note) for note in (first, again, later)
    ]
    # One connection per recheck interval, however many requests come.
    assert (connections_then, refusing.accepted) == (1, 2)
    assert refusing.refused == ["SSLCertVerificationError"] * 2


# The TLS settings read at start


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "does not exist"),
        (b"not a certificate\n", "holds no PEM certificate to trust"),
    ],
    ids=["missing", "not-a-certificate"],
)
def test_a_ca_file_that_cannot_be_read_is_named_at_start(
    credentials: stack.Credentials, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    ca_file = tmp_path / "ca.pem"
    if content is not None:
        ca_file.write_bytes(content)
    app = token_app("com.example.demo", 443, credentials, ca_file=str(ca_file))

    with pytest.raises(ConfigurationError) as raised:
        ApnsClient(app, request_timeout_s=5)

    assert str(raised.value) == f"apps (com.example.demo).ca_file {ca_file} {problem}"


def test_a_missing_key_file_is_named_by_its_setting(
    credentials: stack.Credentials, tmp_path: Path
) -> None:
    app = token_app(
        "com.example.demo", 443, credentials, key_file=str(tmp_path / "none.p8")
    )

    with pytest.raises(ConfigurationError) as raised:
        ApnsClient(app, request_timeout_s=5)

    assert str(raised.value) == (
        f"apps (com.example.demo).key_file {tmp_path}/none.p8 does not exist"
    )


# Provider tokens


async def test_the_mints_counter_counts_every_token_signed(
    credentials: stack.Credentials, simulator: Simulator
) -> None:
    bundle_id = f"com.example.mints{secrets.token_hex(4)}"
    client = ApnsClient(
        token_app(bundle_id, simulator.port, credentials), request_timeout_s=5
    )
    try:
        await asyncio.gather(*(client.send(notification(bundle_id)) for _ in range(5)))
        (first,) = client.pool.connections
        # A second connection brings a token of its own.
        client.pool.retire(first, "test")
        await client.send(notification(bundle_id))
        tokens = {first.token, *(c.token for c in client.pool.connections)}
    finally:
        await client.aclose()

    counted = metrics.registry.get_sample_value(
        "apns_connector_token_mints_total", {"app_topic": bundle_id}
    )
    assert counted == 2
    assert sum(token.mints for token in tokens if token is not None) == 2
