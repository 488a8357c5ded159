"""The project's certificate authority and the participants' certificates (RSA 2048, SHA-256, PEM).

The CA is self-signed with CN = the project's name. Each participant's certificate has CN = its name and
O = its org and is signed by the CA; an admin's role rides in the subject's unstructuredName, the server's
certificate names its host names (and 127.0.0.1) as subject alternative names.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flruntime.provision.project import Participant

VALID_DAYS = 360
KEY_BITS = 2048


def new_key() -> rsa.RSAPrivateKey:
    """Return a new RSA private key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    """Return a private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    """Return a certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_key(data: bytes) -> rsa.RSAPrivateKey:
    """Load an RSA private key from PEM.

    Raises:
        TypeError: the key is not an RSA key.
    """
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"expected an RSA private key, got {type(key).__name__}")
    return key


def _validity(builder: x509.CertificateBuilder, days: int) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))


def make_ca(project: str, days: int = VALID_DAYS) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Create the project's self-signed root CA.

    Args:
        project: the project's name (the CA's CN).
        days: how long the CA is valid.

    Returns:
        The CA's key and certificate.
    """
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, project)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, _validity(builder, days).sign(key, hashes.SHA256())


def subject_of(participant: Participant) -> x509.Name:
    """Return the certificate subject a participant gets."""
    attrs = [
        x509.NameAttribute(NameOID.COMMON_NAME, participant.name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, participant.org),
    ]
    if participant.role:
        attrs.append(x509.NameAttribute(NameOID.UNSTRUCTURED_NAME, participant.role))
    return x509.Name(attrs)


def san_of(participant: Participant) -> list[x509.GeneralName]:
    """Return the subject alternative names of a participant's certificate (the server's only)."""
    if participant.type != "server":
        return []
    names: list[x509.GeneralName] = []
    for host in participant.host_names:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    if loopback not in names:
        names.append(loopback)
    return names


def issue(
    participant: Participant,
    key: rsa.RSAPrivateKey,
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    days: int = VALID_DAYS,
) -> x509.Certificate:
    """Issue a participant's certificate for its key, signed by the CA.

    Args:
        participant: whose certificate.
        key: the participant's private key.
        ca_key: the CA's key.
        ca_cert: the CA's certificate.
        days: how long the certificate is valid.

    Returns:
        The certificate.
    """
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if participant.type == "server":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject_of(participant))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans = san_of(participant)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _validity(builder, days).sign(ca_key, hashes.SHA256())


def matches(cert: x509.Certificate, participant: Participant, ca_cert: x509.Certificate) -> bool:
    """Tell whether an existing certificate still fits a participant (subject, names, issuer, 30+ days left)."""
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    return (
        cert.subject == subject_of(participant)
        and cert.issuer == ca_cert.subject
        and set(sans) == set(san_of(participant))
        and left > dt.timedelta(days=30)
    )


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (0600), replacing any existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
