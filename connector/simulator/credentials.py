"""Test credentials for talking to the simulator: signing keys and TLS certificates.

Apple hands out token-signing keys as `.p8` files (a P-256 private key in PKCS#8 PEM)
and push certificates (as `.p12`, or PEM certificate and key), and serves APNs under a
certificate every client trusts. For tests all are made here, fresh, so nothing real is
ever needed: the provider signs with the `.p8`, the simulator verifies with its public
half, and the client trusts the simulator's self-signed certificate explicitly. For
certificate authentication a client CA stands in for Apple's: the simulator trusts it,
and client certificates it issues name their app in the subject's UID, as Apple's do.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test run, short enough that a leaked file is soon worthless.
_CERTIFICATE_VALIDITY = datetime.timedelta(days=30)
# Clocks of the machines running the tests may disagree a little.
_CLOCK_SKEW = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True, slots=True)
class TlsIdentity:
    """Where the simulator's server certificate and its private key are stored."""

    cert_path: Path
    key_path: Path


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The CA that issues client certificates, which the simulator trusts."""

    cert_path: Path
    key_path: Path


@dataclasses.dataclass(frozen=True, slots=True)
class ClientCertificate:
    """One app's push certificate, in each form a provider may be handed it."""

    # The PEM certificate alone, and its PEM key alone.
    cert_path: Path
    key_path: Path
    # Certificate and key in one PEM file.
    combined_path: Path
    # PKCS#12 protected by the password in `password_path`.
    p12_path: Path
    password_path: Path


def write_signing_key(path: Path) -> bytes:
    """Write a new P-256 token-signing key as Apple's `.p8`; return its public PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )

    _write_private(path, private_pem)

    return key.public_key().public_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PublicFormat.SubjectPublicKeyInfo,
    )


def write_tls_identity(
    directory: Path, hostnames: Sequence[str] = ("localhost", "127.0.0.1")
) -> TlsIdentity:
    """Write a self-signed P-256 server certificate valid for `hostnames`.

    Each hostname that parses as an IP address becomes an IP subject alternative name,
    the others DNS names. The files are `cert.pem` and `key.pem` inside `directory`.
    """
    if not hostnames:
        raise ValueError("a TLS identity needs at least one hostname")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)

    # The certificate is its own trust anchor, so it carries the extensions that strict
    # verifiers (Python 3.13's default context among them) insist on.
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _CERTIFICATE_VALIDITY)
        .add_extension(_subject_alternative_names(hostnames), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_server_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    identity = TlsIdentity(
        cert_path=directory / "cert.pem", key_path=directory / "key.pem"
    )
    _write_private(
        identity.key_path,
        key.private_bytes(
            encoding=serialization.Encoding.PEM,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        ),
    )
    identity.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return identity


def write_certificate_authority(directory: Path) -> CertificateAuthority:
    """Write a new self-signed CA (`client-ca.pem`, `client-ca-key.pem`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Simulator Push CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        _builder(name, name, key.public_key(), key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    authority = CertificateAuthority(
        cert_path=directory / "client-ca.pem", key_path=directory / "client-ca-key.pem"
    )
    _write_private(authority.key_path, _pkcs8(key))
    authority.cert_path.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
    )
    return authority


def write_client_certificate(
    authority: CertificateAuthority,
    directory: Path,
    topic: str,
    *,
    password: bytes = b"push-certificate",
    rsa_key: bool = False,
    valid_for: datetime.timedelta = _CERTIFICATE_VALIDITY,
) -> ClientCertificate:
    """Issue a push certificate for `topic` and write it as PEM and as `.p12`.

    `rsa_key` makes an RSA key, as Apple's certificates have, instead of P-256;
    a negative `valid_for` makes a certificate that has already expired.
    """
    ca_key = serialization.load_pem_private_key(
        authority.key_path.read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_certificate = x509.load_pem_x509_certificate(authority.cert_path.read_bytes())
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if rsa_key
        else ec.generate_private_key(ec.SECP256R1())
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, topic),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Apple Push Services: {topic}"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    if valid_for < datetime.timedelta(0):
        now += valid_for - _CLOCK_SKEW
    certificate = (
        _builder(
            subject,
            ca_certificate.subject,
            key.public_key(),
            ca_key.public_key(),
            now,
            abs(valid_for),
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    written = ClientCertificate(
        cert_path=directory / "cert.pem",
        key_path=directory / "key.pem",
        combined_path=directory / "cert-and-key.pem",
        p12_path=directory / "cert.p12",
        password_path=directory / "p12-password.txt",
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    written.cert_path.write_bytes(certificate_pem)
    _write_private(written.key_path, _pkcs8(key))
    _write_private(written.combined_path, certificate_pem + _pkcs8(key))
    _write_private(
        written.p12_path,
        pkcs12.serialize_key_and_certificates(
            topic.encode(),
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(password),
        ),
    )
    _write_private(written.password_path, password + b"\n")
    return written


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    issuer_key: ec.EllipticCurvePublicKey,
    now: datetime.datetime,
    valid_for: datetime.timedelta = _CERTIFICATE_VALIDITY,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),
            critical=False,
        )
    )


def _key_usage(*, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pkcs8(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _subject_alternative_names(hostnames: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for hostname in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(hostname)))
        except ValueError:
            names.append(x509.DNSName(hostname))
    return x509.SubjectAlternativeName(names)


def _server_key_usage() -> x509.KeyUsage:
    # ECDHE key exchange needs only signatures from an EC server key.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _write_private(path: Path, content: bytes) -> None:
    # Created owner-only from the start, so the key is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
