from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connector.apns.auth import ProviderToken, load_signing_key
from connector.errors import ConfigurationError


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
