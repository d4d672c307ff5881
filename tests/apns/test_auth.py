import contextlib
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connector.apns.auth import (
    ProviderToken,
    load_client_certificate,
    load_signing_key,
)
from connector.apns.client import ssl_context
from connector.errors import ConfigurationError
from connector.settings import AppSettings, Auth
from connector.simulator.credentials import (
    CertificateAuthority,
    ClientCertificate,
    write_certificate_authority,
    write_client_certificate,
    write_signing_key,
)
from connector.simulator.server import Simulator
from connector.stack import KEY_ID, TEAM_ID, Credentials


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def write_key(path: Path, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(curve)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key


def test_token_is_minted_once_reused_and_rotated(tmp_path: Path) -> None:
    key = write_key(tmp_path / "AuthKey.p8", ec.SECP256R1())
    clock = Clock()
    token = ProviderToken(
        load_signing_key(tmp_path / "AuthKey.p8"),
        key_id="KEYID12345",
        team_id="TEAMID1234",
        clock=clock,
    )
    assert token.mints == 0

    first = token.header()
    clock.now += 49 * 60
    assert token.header() == first
    assert token.mints == 1

    clock.now += 60
    second = token.header()
    assert second != first
    assert token.mints == 2

    jwt_text = second.removeprefix("bearer ")
    assert jwt.get_unverified_header(jwt_text) == {
        "alg": "ES256",
        "kid": "KEYID12345",
        "typ": "JWT",
    }
    claims = jwt.decode(jwt_text, key.public_key(), algorithms=["ES256"])
    assert claims == {"iss": "TEAMID1234", "iat": 1_700_000_000 + 50 * 60}
    assert "bearer" not in repr(token) and jwt_text not in repr(token)


def test_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_signing_key(tmp_path / "absent.p8")
    assert str(raised.value) == f"key file {tmp_path / 'absent.p8'} does not exist"


def test_key_that_is_not_pem_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.p8").write_text("not a key")
    with pytest.raises(ConfigurationError) as raised:
        load_signing_key(tmp_path / "bad.p8")
    assert (
        str(raised.value) == f"key file {tmp_path / 'bad.p8'} is not a PEM private key"
    )


def test_key_on_another_curve_is_named(tmp_path: Path) -> None:
    write_key(tmp_path / "p384.p8", ec.SECP384R1())
    with pytest.raises(ConfigurationError) as raised:
        load_signing_key(tmp_path / "p384.p8")
    assert (
        str(raised.value)
        == f"key file {tmp_path / 'p384.p8'} is not a P-256 (ES256) key"
    )


# The schedule against the simulator's per-connection rules, over TLS HTTP/2, with
# one clock for both sides.

START = 1_700_000_000
DEVICE = "ab" * 32
BUNDLE_ID = "com.example.schedule"


def provider_token(credentials: Credentials, clock: Clock) -> ProviderToken:
    return ProviderToken(
        load_signing_key(credentials.key_file),
        key_id=KEY_ID,
        team_id=TEAM_ID,
        clock=clock,
    )


@contextlib.asynccontextmanager
async def one_connection(
    credentials: Credentials, clock: Clock, **options: Any
) -> AsyncIterator[tuple[Simulator, httpx.AsyncClient]]:
    async with Simulator(
        tls=credentials.tls,
        signing_keys=credentials.signing_keys,
        strict_tokens=True,
        clock=clock,
        **options,
    ) as apns:
        trust = ssl.create_default_context(cafile=credentials.cert_file)
        async with httpx.AsyncClient(
            http2=True,
            verify=trust,
            base_url=apns.url,
            limits=httpx.Limits(max_connections=1),
        ) as client:
            yield apns, client


async def push(client: httpx.AsyncClient, authorization: str) -> tuple[int, Any]:
    response = await client.post(
        f"/3/device/{DEVICE}",
        headers={
            "authorization": authorization,
            "apns-push-type": "alert",
            "apns-topic": BUNDLE_ID,
        },
        content=b'{"aps":{"alert":"hi"}}',
    )
    return response.status_code, response.json() if response.content else None


def issued_at(header: str) -> int:
    claims = jwt.decode(
        header.removeprefix("bearer "), options={"verify_signature": False}
    )
    return int(claims["iat"])


async def test_token_schedule_over_three_hours_on_one_connection(
    credentials: Credentials,
) -> None:
    clock = Clock()
    clock.now = START
    token = provider_token(credentials, clock)
    assert (token.mints, token.issued_at) == (0, None)

    answers, minted_at = [], []
    async with one_connection(credentials, clock) as (apns, client):
        # A request every five minutes for three hours, all on one connection.
        for minute in range(0, 181, 5):
            clock.now = START + minute * 60
            header = token.header()
            answers.append(await push(client, header))
            minted_at.append((issued_at(header) - START) // 60)

    assert answers == [(200, None)] * 37
    assert {request.connection_id for request in apns.received} == {1}
    # Minted at first use, reused, rotated every 50 minutes: never within 20 minutes
    # of the last mint, never older than an hour.
    assert sorted(set(minted_at)) == [0, 50, 100, 150]
    assert token.mints == 4
    assert all(0 <= minute * 5 - minted < 60 for minute, minted in enumerate(minted_at))


def test_invalidate_refuses_a_new_token_within_20_minutes() -> None:
    clock = Clock()
    key = ec.generate_private_key(ec.SECP256R1())
    token = ProviderToken(key, key_id=KEY_ID, team_id=TEAM_ID, clock=clock)
    assert token.invalidate() is True

    first = token.header()
    clock.now += 19 * 60 + 59
    assert token.invalidate() is False
    assert token.header() == first

    clock.now += 1
    assert token.invalidate() is True
    assert token.header() != first
    assert token.mints == 2


async def test_simulator_refuses_a_second_token_within_20_minutes(
    credentials: Credentials,
) -> None:
    clock = Clock()
    async with one_connection(credentials, clock) as (_, client):
        first = await push(client, provider_token(credentials, clock).header())
        clock.now += 19 * 60
        second = await push(client, provider_token(credentials, clock).header())
        clock.now += 60
        third = await push(client, provider_token(credentials, clock).header())

    assert first == (200, None)
    assert second == (429, {"reason": "TooManyProviderTokenUpdates"})
    assert third == (200, None)


async def test_simulator_expires_a_token_after_an_hour(
    credentials: Credentials,
) -> None:
    clock = Clock()
    header = provider_token(credentials, clock).header()
    async with one_connection(credentials, clock) as (_, client):
        clock.now += 3600
        within = await push(client, header)
        clock.now += 1
        after = await push(client, header)

    assert within == (200, None)
    assert after == (403, {"reason": "ExpiredProviderToken"})


async def test_simulator_refuses_a_bad_signature_and_a_second_key(
    credentials: Credentials, tmp_path: Path
) -> None:
    clock = Clock()
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = ProviderToken(stranger, key_id=KEY_ID, team_id=TEAM_ID, clock=clock)
    other_pem = write_signing_key(tmp_path / "AuthKey_OTHERKEY01.p8")
    other = ProviderToken(
        load_signing_key(tmp_path / "AuthKey_OTHERKEY01.p8"),
        key_id="OTHERKEY01",
        team_id=TEAM_ID,
        clock=clock,
    )
    keys = {**credentials.signing_keys, "OTHERKEY01": (TEAM_ID, other_pem)}

    async with Simulator(
        tls=credentials.tls, signing_keys=keys, strict_tokens=True, clock=clock
    ) as apns:
        trust = ssl.create_default_context(cafile=credentials.cert_file)
        async with httpx.AsyncClient(
            http2=True, verify=trust, base_url=apns.url
        ) as client:
            bad_signature = await push(client, forged.header())
            good = await push(client, provider_token(credentials, clock).header())
            clock.now += 30 * 60
            second_key = await push(client, other.header())

    assert bad_signature == (403, {"reason": "InvalidProviderToken"})
    assert good == (200, None)
    assert second_key == (403, {"reason": "UnrelatedKeyIdInToken"})


# Certificate authentication: each form a provider is given, presented over TLS.

CERT_TOPIC = "com.example.certified"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return write_certificate_authority(tmp_path_factory.mktemp("ca"))


def certificate_app(**fields: Any) -> AppSettings:
    return AppSettings(bundle_id=CERT_TOPIC, auth=Auth.CERTIFICATE, **fields)


def forms(issued: ClientCertificate) -> dict[str, AppSettings]:
    return {
        "p12": certificate_app(
            certificate_file=str(issued.p12_path),
            certificate_password_file=str(issued.password_path),
        ),
        "pem": certificate_app(
            certificate_file=str(issued.cert_path),
            certificate_key_file=str(issued.key_path),
        ),
        "combined pem": certificate_app(certificate_file=str(issued.combined_path)),
    }


@pytest.mark.parametrize("rsa_key", [False, True], ids=["p-256", "rsa"])
@pytest.mark.parametrize("form", ["p12", "pem", "combined pem"])
async def test_a_client_certificate_authenticates_its_app_over_tls(
    credentials: Credentials,
    authority: CertificateAuthority,
    tmp_path: Path,
    form: str,
    rsa_key: bool,
) -> None:
    issued = write_client_certificate(authority, tmp_path, CERT_TOPIC, rsa_key=rsa_key)
    context = ssl_context(
        msgspec.structs.replace(forms(issued)[form], ca_file=str(credentials.cert_file))
    )

    # The certificate's own topic, its app's VoIP topic, another app's, and none.
    pushes = [
        ("alert", CERT_TOPIC),
        ("voip", f"{CERT_TOPIC}.voip"),
        ("alert", "com.example.other"),
        ("alert", None),
    ]
    answers = []
    async with (
        Simulator(tls=credentials.tls, client_ca=authority.cert_path) as apns,
        httpx.AsyncClient(http2=True, verify=context, base_url=apns.url) as client,
    ):
        for push_type, topic in pushes:
            headers = {"apns-push-type": push_type}
            if topic is not None:
                headers["apns-topic"] = topic
            response = await client.post(
                f"/3/device/{DEVICE}", headers=headers, content=b'{"aps":{}}'
            )
            answers.append((response.status_code, response.content))

    assert answers == [
        (200, b""),
        (200, b""),
        (400, b'{"reason":"TopicDisallowed"}'),
        (200, b""),
    ]
    assert all("authorization" not in r.headers for r in apns.received)


def test_a_certificate_problem_is_named_at_start(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = write_client_certificate(authority, tmp_path / "a", CERT_TOPIC)
    other = write_client_certificate(authority, tmp_path / "b", CERT_TOPIC)
    wrong_password = tmp_path / "wrong.txt"
    wrong_password.write_text("not it\n")
    encrypted_key = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(issued.key_path.read_bytes(), None)
    encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    where = "apps (com.example.certified).certificate_file"
    unreadable = (
        f"{where} {issued.p12_path} cannot be read as PKCS#12 or PEM (wrong password?)"
    )
    cases = [
        (
            certificate_app(certificate_file=str(tmp_path / "absent.p12")),
            f"{where} {tmp_path / 'absent.p12'} does not exist",
        ),
        (
            certificate_app(
                certificate_file=str(issued.p12_path),
                certificate_password_file=str(wrong_password),
            ),
            unreadable,
        ),
        (
            certificate_app(certificate_file=str(issued.p12_path)),
            unreadable,
        ),
        (
            certificate_app(certificate_file=str(issued.cert_path)),
            (
                f"{where} {issued.cert_path}: no PEM private key; put it in the file "
                "or name certificate_key_file"
            ),
        ),
        (
            certificate_app(
                certificate_file=str(issued.cert_path),
                certificate_key_file=str(other.key_path),
            ),
            f"{where} {issued.cert_path}: the private key is not the certificate's",
        ),
        (
            certificate_app(
                certificate_file=str(issued.cert_path),
                certificate_key_file=str(encrypted_key),
            ),
            (
                f"{where} {issued.cert_path}: the private key is encrypted; name "
                "certificate_password_file"
            ),
        ),
    ]
    for app, message in cases:
        with pytest.raises(ConfigurationError) as raised:
            load_client_certificate(ssl.create_default_context(), app)
        assert str(raised.value) == message


def test_an_expired_certificate_is_loaded_and_its_expiry_returned(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    # Only its app's problem, not the connector's: see tests/apns/test_client.py.
    expired = write_client_certificate(
        authority, tmp_path, CERT_TOPIC, valid_for=-datetime.timedelta(days=1)
    )
    expired_on = x509.load_pem_x509_certificate(
        expired.cert_path.read_bytes()
    ).not_valid_after_utc

    app = certificate_app(certificate_file=str(expired.combined_path))
    assert load_client_certificate(ssl.create_default_context(), app) == expired_on


def test_an_encrypted_pem_key_is_read_with_the_password_file(
    authority: CertificateAuthority, tmp_path: Path
) -> None:
    issued = write_client_certificate(authority, tmp_path, CERT_TOPIC)
    key = serialization.load_pem_private_key(issued.key_path.read_bytes(), None)
    (tmp_path / "encrypted.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    (tmp_path / "password").write_bytes(b"s3cret\r\n")

    app = certificate_app(
        certificate_file=str(issued.cert_path),
        certificate_key_file=str(tmp_path / "encrypted.pem"),
        certificate_password_file=str(tmp_path / "password"),
    )
    load_client_certificate(ssl.create_default_context(), app)
