"""The simulator answers like APNs: statuses, reasons, bodies and what it records."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.events
import h2.settings
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.connection import H2Connection

from connector.apns.push_types import Header, PushType
from connector.apns.reasons import Reason
from connector.simulator.credentials import (
    TlsIdentity,
    write_signing_key,
    write_tls_identity,
)
from connector.simulator.received import ReceivedRequest
from connector.simulator.server import Simulator

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
BUNDLE_ID = "com.example.app"
TOKEN = "a1" * 32
UNREGISTERED_TOKEN = "b2" * 32
UNREGISTERED_MS = 1_700_000_000_123
THROTTLED_TOKEN = "c3" * 32
EXPIRED_TOKEN = "d4" * 32
PAYLOAD = b'{"aps":{"alert":"hi"}}'
APNS_ID = "123e4567-e89b-42d3-a456-426614174000"
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Credentials:
    directory: Path
    identity: TlsIdentity
    key_path: Path
    signing_key: ec.EllipticCurvePrivateKey
    public_pem: bytes
    # A key the simulator does not know, for forged signatures.
    stranger_key: ec.EllipticCurvePrivateKey


@pytest.fixture(scope="session")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    directory = tmp_path_factory.mktemp("credentials")
    key_path = directory / f"AuthKey_{KEY_ID}.p8"
    public_pem = write_signing_key(key_path)
    signing_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(signing_key, ec.EllipticCurvePrivateKey)
    return Credentials(
        directory=directory,
        identity=write_tls_identity(directory / "tls"),
        key_path=key_path,
        signing_key=signing_key,
        public_pem=public_pem,
        stranger_key=ec.generate_private_key(ec.SECP256R1()),
    )


@pytest.fixture
async def simulator(credentials: Credentials) -> AsyncIterator[Simulator]:
    async with Simulator(
        tls=credentials.identity,
        signing_keys={KEY_ID: (TEAM_ID, credentials.public_pem)},
        unregistered={UNREGISTERED_TOKEN: UNREGISTERED_MS},
        injected={
            THROTTLED_TOKEN: Reason.TOO_MANY_REQUESTS,
            EXPIRED_TOKEN: Reason.EXPIRED_TOKEN,
        },
        topics={BUNDLE_ID},
    ) as running:
        yield running


def trusting(identity: TlsIdentity) -> ssl.SSLContext:
    """A client context trusting only the simulator, verifying as strictly as 3.13."""
    context = ssl.create_default_context(cafile=identity.cert_path)
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


@pytest.fixture
async def client(
    simulator: Simulator, credentials: Credentials
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        http2=True,
        verify=trusting(credentials.identity),
        base_url=simulator.url,
        limits=httpx.Limits(max_connections=1),
    ) as opened:
        yield opened


def mint(
    key: ec.EllipticCurvePrivateKey,
    *,
    kid: str = KEY_ID,
    iss: str = TEAM_ID,
    iat: object = None,
) -> str:
    claims = {"iss": iss, "iat": int(time.time()) if iat is None else iat}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid})


def push_headers(
    credentials: Credentials, **changes: str | bytes | None
) -> httpx.Headers:
    """Headers of a valid alert push; a change of None removes the header."""
    headers: dict[str, str | bytes] = {
        Header.AUTHORIZATION.value: f"bearer {mint(credentials.signing_key)}",
        Header.PUSH_TYPE.value: PushType.ALERT.value,
        Header.TOPIC.value: BUNDLE_ID,
    }
    for name, value in changes.items():
        header = name.replace("_", "-")
        if value is None:
            headers.pop(header, None)
        else:
            headers[header] = value

    # Raw bytes, so a test can send UTF-8 where httpx would insist on ASCII.
    return httpx.Headers(
        [
            (name.encode(), value if isinstance(value, bytes) else value.encode())
            for name, value in headers.items()
        ]
    )


async def test_accepts_a_valid_push_and_echoes_its_apns_id(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    headers = push_headers(credentials, apns_id=APNS_ID, apns_priority="10")

    response = await client.post(f"/3/device/{TOKEN}", headers=headers, content=PAYLOAD)

    assert response.status_code == 200
    assert response.http_version == "HTTP/2"
    assert response.headers[Header.ID] == APNS_ID
    assert response.content == b""
    [received] = simulator.received
    assert (received.method, received.path, received.body) == (
        "POST",
        f"/3/device/{TOKEN}",
        PAYLOAD,
    )
    assert (received.status, received.reason, received.apns_id) == (200, None, APNS_ID)
    assert received.connection_id == 1
    assert headers.items() <= received.headers.items()


async def test_generates_an_apns_id_when_none_is_sent(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    response = await client.post(
        f"/3/device/{TOKEN}", headers=push_headers(credentials), content=PAYLOAD
    )

    assert response.status_code == 200
    generated = response.headers[Header.ID]
    assert str(uuid.UUID(generated)) == generated
    assert uuid.UUID(generated).version == 4
    assert simulator.received[0].apns_id == generated


def rejection(
    name: str,
    status: int,
    reason: Reason,
    *,
    method: str = "POST",
    path: str = f"/3/device/{TOKEN}",
    body: bytes = PAYLOAD,
    **changes: str | bytes | None,
) -> Any:
    return pytest.param(method, path, changes, body, status, reason, id=name)


@pytest.mark.parametrize(
    ("method", "path", "changes", "body", "status", "reason"),
    [
        rejection("get", 405, Reason.METHOD_NOT_ALLOWED, method="GET", body=b""),
        rejection("put", 405, Reason.METHOD_NOT_ALLOWED, method="PUT"),
        rejection("devices", 404, Reason.BAD_PATH, path=f"/3/devices/{TOKEN}"),
        rejection("extra-segment", 404, Reason.BAD_PATH, path=f"/3/device/{TOKEN}/x"),
        rejection("root", 404, Reason.BAD_PATH, path="/"),
        rejection("no-auth", 403, Reason.MISSING_PROVIDER_TOKEN, authorization=None),
        rejection("no-push-type", 400, Reason.INVALID_PUSH_TYPE, apns_push_type=None),
        rejection(
            "unknown-push-type", 400, Reason.INVALID_PUSH_TYPE, apns_push_type="banner"
        ),
        rejection("no-topic", 400, Reason.MISSING_TOPIC, apns_topic=None),
        rejection("other-app", 400, Reason.BAD_TOPIC, apns_topic="com.example.other"),
        rejection(
            "other-app-voip",
            400,
            Reason.BAD_TOPIC,
            apns_push_type="voip",
            apns_topic="com.example.other.voip",
        ),
        rejection(
            "voip-without-suffix", 400, Reason.INVALID_PUSH_TYPE, apns_push_type="voip"
        ),
        rejection(
            "alert-to-voip-topic",
            400,
            Reason.INVALID_PUSH_TYPE,
            apns_topic=f"{BUNDLE_ID}.voip",
        ),
        rejection(
            "liveactivity-to-voip-topic",
            400,
            Reason.INVALID_PUSH_TYPE,
            apns_push_type="liveactivity",
            apns_topic=f"{BUNDLE_ID}.voip",
        ),
        rejection(
            "uppercase-apns-id", 400, Reason.BAD_MESSAGE_ID, apns_id=APNS_ID.upper()
        ),
        rejection("not-a-uuid", 400, Reason.BAD_MESSAGE_ID, apns_id="message-1"),
        rejection("priority-7", 400, Reason.BAD_PRIORITY, apns_priority="7"),
        rejection(
            "expiration-word",
            400,
            Reason.BAD_EXPIRATION_DATE,
            apns_expiration="tomorrow",
        ),
        rejection(
            "expiration-negative", 400, Reason.BAD_EXPIRATION_DATE, apns_expiration="-1"
        ),
        rejection(
            "collapse-id-65-bytes",
            400,
            Reason.BAD_COLLAPSE_ID,
            apns_collapse_id="é".encode() * 32 + b"x",
        ),
        rejection("no-token", 400, Reason.MISSING_DEVICE_TOKEN, path="/3/device/"),
        rejection("odd-token", 400, Reason.BAD_DEVICE_TOKEN, path="/3/device/abc"),
        rejection(
            "not-hex", 400, Reason.BAD_DEVICE_TOKEN, path=f"/3/device/{'zz' * 32}"
        ),
        rejection(
            "injected",
            429,
            Reason.TOO_MANY_REQUESTS,
            path=f"/3/device/{THROTTLED_TOKEN}",
        ),
        rejection("empty-body", 400, Reason.PAYLOAD_EMPTY, body=b""),
        # The earlier check wins when a request is wrong in several ways.
        rejection(
            "method-before-path",
            405,
            Reason.METHOD_NOT_ALLOWED,
            method="GET",
            path="/elsewhere",
            body=b"",
            authorization=None,
        ),
        rejection(
            "auth-before-headers",
            403,
            Reason.MISSING_PROVIDER_TOKEN,
            path="/3/device/abc",
            body=b"",
            authorization=None,
            apns_priority="7",
        ),
        rejection(
            "headers-before-token",
            400,
            Reason.BAD_PRIORITY,
            path="/3/device/abc",
            body=b"",
            apns_priority="7",
        ),
        rejection(
            "token-before-body",
            400,
            Reason.BAD_DEVICE_TOKEN,
            path="/3/device/abc",
            body=b"",
        ),
        rejection(
            "unregistered-before-body",
            410,
            Reason.UNREGISTERED,
            path=f"/3/device/{UNREGISTERED_TOKEN}",
            body=b"",
        ),
    ],
)
async def test_rejects_what_apple_rejects(
    client: httpx.AsyncClient,
    simulator: Simulator,
    credentials: Credentials,
    method: str,
    path: str,
    changes: dict[str, str | bytes | None],
    body: bytes,
    status: int,
    reason: Reason,
) -> None:
    headers = push_headers(credentials, **changes)

    response = await client.request(method, path, headers=headers, content=body)

    assert response.status_code == status
    assert response.json()["reason"] == reason.value
    assert response.json().keys() == (
        {"reason", "timestamp"} if status == 410 else {"reason"}
    )
    assert response.headers["content-type"] == "application/json"
    [received] = simulator.received
    assert (received.method, received.path, received.body) == (method, path, body)
    assert (received.status, received.reason) == (status, reason)
    assert received.apns_id == response.headers[Header.ID]


async def test_rejects_a_repeated_header(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    headers = [*push_headers(credentials).items(), (Header.PRIORITY.value, "10")]
    headers.append((Header.PRIORITY.value, "5"))

    response = await client.post(f"/3/device/{TOKEN}", headers=headers, content=PAYLOAD)

    assert response.status_code == 400
    assert response.json() == {"reason": Reason.DUPLICATE_HEADERS.value}
    assert simulator.received[0].headers[Header.PRIORITY] == "10"


@pytest.mark.parametrize(
    "changes",
    [
        {"apns_priority": "1"},
        {"apns_priority": "5"},
        {"apns_expiration": "0"},
        {"apns_expiration": "1893456000"},
        {"apns_collapse_id": "é".encode() * 32},
        {"apns_push_type": "voip", "apns_topic": f"{BUNDLE_ID}.voip"},
        {"apns_push_type": "mdm", "apns_topic": BUNDLE_ID},
        {
            "apns_push_type": "liveactivity",
            "apns_topic": f"{BUNDLE_ID}.push-type.liveactivity",
        },
    ],
)
async def test_accepts_every_valid_header_value(
    client: httpx.AsyncClient, credentials: Credentials, changes: dict[str, str]
) -> None:
    response = await client.post(
        f"/3/device/{TOKEN.upper()}",
        headers=push_headers(credentials, **changes),
        content=PAYLOAD,
    )

    assert response.status_code == 200


async def test_accepts_any_topic_when_none_is_configured(
    credentials: Credentials,
) -> None:
    async with (
        Simulator(
            tls=credentials.identity,
            signing_keys={KEY_ID: (TEAM_ID, credentials.public_pem)},
        ) as simulator,
        httpx.AsyncClient(http2=True, verify=trusting(credentials.identity)) as client,
    ):
        response = await client.post(
            f"{simulator.url}/3/device/{TOKEN}",
            headers=push_headers(credentials, apns_topic="org.anyone.app"),
            content=PAYLOAD,
        )

    assert response.status_code == 200


async def test_answers_unregistered_with_the_exact_timestamp(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    response = await client.post(
        f"/3/device/{UNREGISTERED_TOKEN}",
        headers=push_headers(credentials),
        content=PAYLOAD,
    )

    assert response.status_code == 410
    assert response.json() == {
        "reason": Reason.UNREGISTERED.value,
        "timestamp": UNREGISTERED_MS,
    }
    assert (simulator.received[0].status, simulator.received[0].reason) == (
        410,
        Reason.UNREGISTERED,
    )


async def test_unregisters_a_token_while_running(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    url = f"/3/device/{TOKEN}"
    before = await client.post(url, headers=push_headers(credentials), content=PAYLOAD)
    simulator.register_unregistered(TOKEN.upper(), 1_234)

    after = await client.post(url, headers=push_headers(credentials), content=PAYLOAD)

    assert before.status_code == 200
    assert after.status_code == 410
    assert after.json() == {"reason": Reason.UNREGISTERED.value, "timestamp": 1_234}


async def test_an_injected_dead_token_carries_a_timestamp(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    before_ms = time.time_ns() // 1_000_000

    response = await client.post(
        f"/3/device/{EXPIRED_TOKEN}", headers=push_headers(credentials), content=PAYLOAD
    )

    assert response.status_code == 410
    assert response.json()["reason"] == Reason.EXPIRED_TOKEN.value
    assert before_ms <= response.json()["timestamp"] <= time.time_ns() // 1_000_000


def _hs256_token() -> str:
    claims = {"iss": TEAM_ID, "iat": int(time.time())}
    return jwt.encode(
        claims, "a shared secret of 32 bytes ....", "HS256", headers={"kid": KEY_ID}
    )


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        pytest.param(
            lambda c: f"bearer {mint(c.signing_key, iat=int(time.time()) - 3601)}",
            Reason.EXPIRED_PROVIDER_TOKEN,
            id="expired",
        ),
        pytest.param(
            lambda c: f"bearer {mint(c.stranger_key)}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="bad-signature",
        ),
        pytest.param(
            lambda c: f"bearer {mint(c.signing_key, kid='UNKNOWNKID')}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="unknown-kid",
        ),
        pytest.param(
            lambda c: f"bearer {mint(c.signing_key, iss='OTHERTEAM1')}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="wrong-issuer",
        ),
        pytest.param(
            lambda c: f"bearer {_hs256_token()}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="wrong-algorithm",
        ),
        pytest.param(
            lambda c: f"bearer {mint(c.signing_key, iat=time.time())}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="fractional-iat",
        ),
        pytest.param(
            lambda c: f"bearer {mint(c.signing_key, iat=int(time.time()) + 120)}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="issued-in-the-future",
        ),
        pytest.param(
            lambda c: "bearer not.a.jwt",
            Reason.INVALID_PROVIDER_TOKEN,
            id="not-a-jwt",
        ),
        pytest.param(
            lambda c: f"basic {mint(c.signing_key)}",
            Reason.INVALID_PROVIDER_TOKEN,
            id="other-scheme",
        ),
        pytest.param(
            lambda c: "bearer", Reason.MISSING_PROVIDER_TOKEN, id="empty-bearer"
        ),
    ],
)
async def test_rejects_provider_tokens_apple_rejects(
    client: httpx.AsyncClient,
    simulator: Simulator,
    credentials: Credentials,
    authorization: Callable[[Credentials], str],
    reason: Reason,
) -> None:
    headers = push_headers(credentials, authorization=authorization(credentials))

    response = await client.post(f"/3/device/{TOKEN}", headers=headers, content=PAYLOAD)

    assert response.status_code == 403
    assert response.json() == {"reason": reason.value}
    assert simulator.received[0].reason == reason


async def test_a_revoked_key_is_refused_from_then_on_on_open_connections(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    url = f"/3/device/{TOKEN}"
    # One token, reused on one connection: verified once, refused once revoked.
    headers = push_headers(credentials)
    before = await client.post(url, headers=headers, content=PAYLOAD)
    simulator.revoke_key(KEY_ID)
    after = await client.post(url, headers=headers, content=PAYLOAD)
    # A new key for the team is accepted at once, on the same connection.
    simulator.add_signing_key("NEWKEY0001", TEAM_ID, credentials.key_path.read_bytes())
    new_key = mint(credentials.signing_key, kid="NEWKEY0001")
    renewed = await client.post(
        url,
        headers=push_headers(credentials, authorization=f"bearer {new_key}"),
        content=PAYLOAD,
    )

    assert (before.status_code, before.content) == (200, b"")
    assert (after.status_code, after.json()) == (
        403,
        {"reason": Reason.INVALID_PROVIDER_TOKEN.value},
    )
    assert (renewed.status_code, renewed.content) == (200, b"")
    assert len({r.connection_id for r in simulator.received}) == 1


async def test_keys_revoked_from_the_start_are_refused(
    credentials: Credentials,
) -> None:
    other_pem = write_signing_key(credentials.directory / "AuthKey_OTHERKEY01.p8")
    other_key = serialization.load_pem_private_key(
        (credentials.directory / "AuthKey_OTHERKEY01.p8").read_bytes(), None
    )
    assert isinstance(other_key, ec.EllipticCurvePrivateKey)
    keys = {
        KEY_ID: (TEAM_ID, credentials.public_pem),
        "OTHERKEY01": (TEAM_ID, other_pem),
    }
    async with (
        Simulator(
            tls=credentials.identity, signing_keys=keys, revoked_keys={"OTHERKEY01"}
        ) as apns,
        httpx.AsyncClient(
            http2=True, verify=trusting(credentials.identity), base_url=apns.url
        ) as client,
    ):
        answers = []
        for key, kid in ((credentials.signing_key, KEY_ID), (other_key, "OTHERKEY01")):
            headers = push_headers(
                credentials, authorization=f"bearer {mint(key, kid=kid)}"
            )
            response = await client.post(
                f"/3/device/{TOKEN}", headers=headers, content=PAYLOAD
            )
            answers.append((response.status_code, response.content))

    assert answers == [(200, b""), (403, b'{"reason":"InvalidProviderToken"}')]


async def test_accepts_a_token_just_under_an_hour_old(
    client: httpx.AsyncClient, credentials: Credentials
) -> None:
    token = mint(credentials.signing_key, iat=int(time.time()) - 3590)
    headers = push_headers(credentials, authorization=f"bearer {token}")

    response = await client.post(f"/3/device/{TOKEN}", headers=headers, content=PAYLOAD)

    assert response.status_code == 200


async def test_answers_200_concurrent_requests_on_one_connection(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    headers = push_headers(credentials)
    url = f"/3/device/{TOKEN}"

    responses = await asyncio.gather(
        *(client.post(url, headers=headers, content=PAYLOAD) for _ in range(200))
    )

    assert [response.status_code for response in responses] == [200] * 200
    assert len({response.headers[Header.ID] for response in responses}) == 200
    assert len(simulator.received) == 200
    assert {received.connection_id for received in simulator.received} == {1}


async def test_serves_many_connections_at_once(
    simulator: Simulator, credentials: Credentials
) -> None:
    async def send_from_own_connection() -> list[int]:
        async with httpx.AsyncClient(
            http2=True, verify=trusting(credentials.identity), base_url=simulator.url
        ) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/3/device/{TOKEN}",
                        headers=push_headers(credentials),
                        content=PAYLOAD,
                    )
                    for _ in range(20)
                )
            )
        return [response.status_code for response in responses]

    statuses = await asyncio.gather(*(send_from_own_connection() for _ in range(5)))

    assert statuses == [[200] * 20] * 5
    connections = {received.connection_id for received in simulator.received}
    assert connections == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("push_type", "topic", "size", "status"),
    [
        (PushType.ALERT, BUNDLE_ID, 4096, 200),
        (PushType.ALERT, BUNDLE_ID, 4097, 413),
        (PushType.VOIP, f"{BUNDLE_ID}.voip", 5120, 200),
        (PushType.VOIP, f"{BUNDLE_ID}.voip", 5121, 413),
    ],
)
async def test_limits_the_payload_by_push_type(
    client: httpx.AsyncClient,
    simulator: Simulator,
    credentials: Credentials,
    push_type: PushType,
    topic: str,
    size: int,
    status: int,
) -> None:
    body = json_of_size(size)
    headers = push_headers(credentials, apns_push_type=push_type, apns_topic=topic)

    response = await client.post(f"/3/device/{TOKEN}", headers=headers, content=body)

    assert response.status_code == status
    if status == 413:
        assert response.json() == {"reason": Reason.PAYLOAD_TOO_LARGE.value}
    assert simulator.received[0].body == body


async def test_large_bodies_never_exhaust_the_flow_control_windows(
    client: httpx.AsyncClient, simulator: Simulator, credentials: Credentials
) -> None:
    headers = push_headers(credentials)
    url = f"/3/device/{TOKEN}"

    # 400 kB in flight at once, and one body past every default window.
    accepted = await asyncio.gather(
        *(
            client.post(url, headers=headers, content=json_of_size(4096))
            for _ in range(100)
        )
    )
    huge = await client.post(url, headers=headers, content=json_of_size(300_000))

    assert {response.status_code for response in accepted} == {200}
    assert huge.status_code == 413
    assert len(simulator.received[-1].body) == 300_000


def json_of_size(size: int) -> bytes:
    frame = b'{"aps":{"alert":"hi"},"pad":""}'
    return frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]


async def test_stop_closes_connections_still_open(
    credentials: Credentials,
) -> None:
    simulator = Simulator(
        tls=credentials.identity,
        signing_keys={KEY_ID: (TEAM_ID, credentials.public_pem)},
    )
    await simulator.start()
    async with httpx.AsyncClient(
        http2=True, verify=trusting(credentials.identity), base_url=simulator.url
    ) as client:
        url = f"/3/device/{TOKEN}"
        before = await client.post(
            url, headers=push_headers(credentials), content=PAYLOAD
        )

        await simulator.stop()
        await simulator.stop()

        with pytest.raises(httpx.TransportError):
            await client.post(url, headers=push_headers(credentials), content=PAYLOAD)

    assert before.status_code == 200
    assert len(simulator.received) == 1


async def test_refuses_a_client_that_does_not_speak_http2(
    simulator: Simulator, credentials: Credentials
) -> None:
    async with httpx.AsyncClient(
        http2=False, verify=trusting(credentials.identity)
    ) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{simulator.url}/3/device/{TOKEN}", content=PAYLOAD)

    assert simulator.received == []


@contextlib.asynccontextmanager
async def raw_h2(
    simulator: Simulator, credentials: Credentials
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, H2Connection]]:
    """A bare HTTP/2 connection, for what httpx will not do on purpose."""
    context = trusting(credentials.identity)
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", simulator.port, ssl=context, server_hostname="127.0.0.1"
    )
    conn = H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    try:
        yield reader, writer, conn
    finally:
        writer.close()
        await writer.wait_closed()


def request_headers(credentials: Credentials) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", "127.0.0.1"),
        (":path", f"/3/device/{TOKEN}"),
        *push_headers(credentials).items(),
    ]


async def read_events(
    reader: asyncio.StreamReader,
    conn: H2Connection,
    *,
    for_s: float,
    until_stream_ends: int | None = None,
) -> list[h2.events.Event]:
    """The events the server causes within `for_s` seconds."""
    events: list[h2.events.Event] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + for_s
    while (remaining := deadline - loop.time()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            break
        events += conn.receive_data(data)
        if any(
            isinstance(event, h2.events.StreamEnded)
            and event.stream_id == until_stream_ends
            for event in events
        ):
            break
    return events


async def test_announces_apples_settings_and_waits_for_the_whole_body(
    simulator: Simulator, credentials: Credentials
) -> None:
    async with raw_h2(simulator, credentials) as (reader, writer, conn):
        conn.send_headers(1, request_headers(credentials))
        conn.send_data(1, PAYLOAD[:5])
        writer.write(conn.data_to_send())
        early = await read_events(reader, conn, for_s=0.3)

        conn.send_data(1, PAYLOAD[5:], end_stream=True)
        writer.write(conn.data_to_send())
        answered = await read_events(reader, conn, for_s=5, until_stream_ends=1)

    [settings] = [e for e in early if isinstance(e, h2.events.RemoteSettingsChanged)]
    announced = {code: c.new_value for code, c in settings.changed_settings.items()}
    assert announced[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 1000
    assert announced[h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE] == 8000
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in early)
    [response] = [e for e in answered if isinstance(e, h2.events.ResponseReceived)]
    assert (b":status", b"200") in response.headers
    assert simulator.received[0].body == PAYLOAD


async def test_a_stream_reset_before_its_answer_spares_the_connection(
    simulator: Simulator, credentials: Credentials
) -> None:
    async with raw_h2(simulator, credentials) as (reader, writer, conn):
        conn.send_headers(1, request_headers(credentials))
        conn.send_data(1, PAYLOAD, end_stream=True)
        conn.reset_stream(1)
        conn.send_headers(3, request_headers(credentials))
        conn.send_data(3, PAYLOAD, end_stream=True)
        writer.write(conn.data_to_send())

        events = await read_events(reader, conn, for_s=5, until_stream_ends=3)

    [response] = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
    assert response.stream_id == 3
    assert (b":status", b"200") in response.headers
    assert [received.status for received in simulator.received] == [200, 200]


def test_received_repr_hides_tokens(credentials: Credentials) -> None:
    jwt_text = mint(credentials.signing_key)
    received = ReceivedRequest(
        method="POST",
        path=f"/3/device/{TOKEN}",
        headers={"authorization": f"bearer {jwt_text}"},
        body=PAYLOAD,
        status=200,
        reason=None,
        apns_id=APNS_ID,
        connection_id=1,
    )

    assert TOKEN not in repr(received)
    assert jwt_text not in repr(received)


# The command line.


def run_cli(*arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector.simulator", *arguments],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_serves_until_sigterm_and_exits_zero(
    credentials: Credentials, tmp_path: Path
) -> None:
    public_key = tmp_path / "public.pem"
    public_key.write_bytes(credentials.public_pem)
    unregistered = tmp_path / "unregistered.txt"
    unregistered.write_text(f"# dead tokens\n{UNREGISTERED_TOKEN} {UNREGISTERED_MS}\n")
    ready = tmp_path / "port"
    process = run_cli(
        *("--port", "0", "--tls-dir", str(tmp_path / "tls")),
        *("--signing-key", f"{TEAM_ID}:{KEY_ID}:{credentials.key_path}"),
        *("--signing-key", f"{TEAM_ID}:OTHERKEYID:{public_key}"),
        *("--signing-key", f"{TEAM_ID}:REVOKEDKEY:{public_key}"),
        *("--revoked-key", "REVOKEDKEY"),
        *("--unregistered-file", str(unregistered)),
        *("--topic", BUNDLE_ID, "--ready-file", str(ready)),
    )
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert process.poll() is None, "the simulator exited before it was ready"
            assert time.monotonic() < deadline, "the simulator never became ready"
            time.sleep(0.05)
        base_url = f"https://127.0.0.1:{int(ready.read_text())}"

        identity = TlsIdentity(tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem")
        with httpx.Client(
            http2=True, verify=trusting(identity), base_url=base_url
        ) as client:
            accepted = client.post(
                f"/3/device/{TOKEN}", headers=push_headers(credentials), content=PAYLOAD
            )
            other_key = mint(credentials.signing_key, kid="OTHERKEYID")
            unregistered_answer = client.post(
                f"/3/device/{UNREGISTERED_TOKEN}",
                headers=push_headers(credentials, authorization=f"bearer {other_key}"),
                content=PAYLOAD,
            )
            revoked_key = mint(credentials.signing_key, kid="REVOKEDKEY")
            revoked_answer = client.post(
                f"/3/device/{TOKEN}",
                headers=push_headers(
                    credentials, authorization=f"bearer {revoked_key}"
                ),
                content=PAYLOAD,
            )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)

    assert accepted.status_code == 200
    assert unregistered_answer.json() == {
        "reason": Reason.UNREGISTERED.value,
        "timestamp": UNREGISTERED_MS,
    }
    assert (revoked_answer.status_code, revoked_answer.json()) == (
        403,
        {"reason": Reason.INVALID_PROVIDER_TOKEN.value},
    )
    assert process.returncode == 0, stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--signing-key", "TEAM123456-KEY1234567"],
            (
                "apns-simulator: --signing-key must be TEAM_ID:KEY_ID:PATH, "
                "got 'TEAM123456-KEY1234567'"
            ),
        ),
        (
            ["--revoked-key", "KEY1234567"],
            (
                "apns-simulator: --revoked-key: KEY1234567 is not the key id of a "
                "--signing-key"
            ),
        ),
        (
            ["--signing-key", "TEAM123456:KEY1234567:/no/such/key.p8"],
            (
                "apns-simulator: --signing-key: cannot read /no/such/key.p8: "
                "No such file or directory"
            ),
        ),
        (
            ["--unregistered-file", "/no/such/tokens.txt"],
            (
                "apns-simulator: --unregistered-file: cannot read /no/such/tokens.txt: "
                "No such file or directory"
            ),
        ),
    ],
)
def test_cli_reports_a_bad_option_in_one_line_and_exits_2(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    process = run_cli("--port", "0", "--tls-dir", str(tmp_path / "tls"), *arguments)

    _, stderr = process.communicate(timeout=20)

    assert process.returncode == 2
    assert stderr.splitlines() == [message]
    assert not (tmp_path / "tls").exists()
