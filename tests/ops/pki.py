"""Test PKI: a CA, server and client certificates made at test time with the ``cryptography`` package."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    certificate: Path
    private_key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # CA certificate (PEM), the bundle peers verify against
    server: Identity
    client: Identity
    rogue: Identity  # self-signed by another CA: must be refused


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: rsa.RSAPrivateKey, path: Path) -> Path:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def _builder(
    subject: str, issuer: x509.Name, public_key: object, valid_days: float = 2
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, now + dt.timedelta(days=valid_days)) - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
    )


def _make_ca(cn: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        _builder(cn, _name(cn), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _issue(
    ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate, cn: str, out: Path, *, server: bool
) -> Identity:
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        _builder(cn, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = out / f"{cn}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(cert_path, _write_key(key, out / f"{cn}.key"))


def make_pki(out: Path) -> Pki:
    """CA + server (localhost/127.0.0.1) + client certificates, and a rogue client from another CA."""
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca("vera-test-ca")
    ca_path = out / "ca.crt"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    rogue_key, rogue_cert = _make_ca("rogue-ca")
    return Pki(
        ca=ca_path,
        server=_issue(ca_key, ca_cert, "gateway-server", out, server=True),
        client=_issue(ca_key, ca_cert, "pacs-client", out, server=False),
        rogue=_issue(rogue_key, rogue_cert, "rogue-client", out, server=False),
    )


def self_signed(out: Path, cn: str, valid_days: float) -> Identity:
    """A self-signed certificate valid for ``valid_days`` from now (negative: already expired)."""
    key = _key()
    cert = _builder(cn, _name(cn), key.public_key(), valid_days).sign(key, hashes.SHA256())
    cert_path = out / f"{cn}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(cert_path, _write_key(key, out / f"{cn}.key"))
