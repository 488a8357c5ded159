"""Signing a kit's ``startup/`` folder with the project CA's key, and checking it against the root certificate.

``startup/signature.json`` lists every other file of ``startup/`` (recursively, by relative path) with its
SHA-256 and a signature by the CA key over ``path NUL sha256``; one more signature covers the whole sorted
list, so a file that was added, removed, or whose entry was dropped from the list is detected, as is a
changed byte. Signatures are RSA PKCS#1 v1.5 with SHA-256.

Entries whose name starts with ``..`` are not kit files: Kubernetes mounts a Secret as ``..data/`` and
``..<timestamp>/`` folders with a symbolic link per file; the links are read (and checked) as the kit's files.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from flruntime.errors import FLRuntimeError
from flruntime.exit_codes import ExitCode

SIGNATURE_FILE = "signature.json"
STARTUP = "startup"
FORMAT = 1


class KitSignatureError(FLRuntimeError):
    """A startup kit does not match what was signed at provisioning."""

    exit_code = ExitCode.INVALID_JOB


def _files(startup: Path) -> dict[str, str]:
    out = {}
    for path in sorted(startup.rglob("*")):
        rel = path.relative_to(startup)
        if path.is_file() and rel.as_posix() != SIGNATURE_FILE and not rel.parts[0].startswith(".."):
            out[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _manifest(digests: dict[str, str]) -> bytes:
    return "\n".join(f"{name}\0{digests[name]}" for name in sorted(digests)).encode()


def _sign(key: rsa.RSAPrivateKey, data: bytes) -> str:
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def sign_kit(kit_dir: str | Path, ca_key: rsa.RSAPrivateKey) -> Path:
    """Write ``startup/signature.json`` over every other file of the kit's ``startup/`` folder.

    Args:
        kit_dir: the participant's kit folder.
        ca_key: the project CA's private key.

    Returns:
        The signature file.
    """
    startup = Path(kit_dir) / STARTUP
    digests = _files(startup)
    doc = {
        "format_version": FORMAT,
        "algorithm": "RSA-PKCS1v15-SHA256",
        "files": {
            name: {"sha256": digest, "signature": _sign(ca_key, f"{name}\0{digest}".encode())}
            for name, digest in digests.items()
        },
        "manifest_signature": _sign(ca_key, _manifest(digests)),
    }
    out = startup / SIGNATURE_FILE
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return out


def _root_key(root_cert: str | Path | bytes | x509.Certificate) -> rsa.RSAPublicKey:
    if isinstance(root_cert, x509.Certificate):
        cert = root_cert
    else:
        data = root_cert if isinstance(root_cert, bytes) else Path(root_cert).read_bytes()
        cert = x509.load_pem_x509_certificate(data)
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KitSignatureError(f"the root certificate holds a {type(key).__name__}, not an RSA key")
    return key


def _valid(key: rsa.RSAPublicKey, signature: Any, data: bytes) -> bool:
    try:
        key.verify(base64.b64decode(str(signature), validate=True), data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_kit(kit_dir: str | Path, root_cert: str | Path | bytes | x509.Certificate) -> None:
    """Check that a kit's ``startup/`` folder is exactly what the project CA signed.

    Args:
        kit_dir: the participant's kit folder.
        root_cert: the project's root certificate (a PEM file, PEM bytes, or a loaded certificate); take it
            from a trusted copy, not from the kit being checked, to detect a replaced ``rootCA.pem``.

    Raises:
        KitSignatureError: naming the first file that was changed, added or removed, or a missing or forged
            signature file.
    """
    startup = Path(kit_dir) / STARTUP
    sig_path = startup / SIGNATURE_FILE
    key = _root_key(root_cert)
    try:
        doc = json.loads(sig_path.read_text(encoding="utf-8"))
        files = doc["files"]
        assert isinstance(files, dict)
        signed = {name: str(entry["sha256"]) for name, entry in files.items()}
    except FileNotFoundError:
        raise KitSignatureError(f"{sig_path}: missing: the kit is not signed") from None
    except (ValueError, KeyError, TypeError, AssertionError) as exc:
        raise KitSignatureError(f"{sig_path}: not a valid signature file ({exc})") from exc
    if not _valid(key, doc.get("manifest_signature"), _manifest(signed)):
        raise KitSignatureError(f"{sig_path}: the file list is not signed by the root certificate's key")
    actual = _files(startup)
    for name in sorted(signed.keys() | actual.keys()):
        path = startup / name
        if name not in actual:
            raise KitSignatureError(f"{path}: removed since provisioning (it is signed in {SIGNATURE_FILE})")
        if name not in signed:
            raise KitSignatureError(f"{path}: added since provisioning (it is not signed in {SIGNATURE_FILE})")
        if actual[name] != signed[name]:
            raise KitSignatureError(f"{path}: changed since provisioning (its SHA-256 differs from the signed one)")
        if not _valid(key, files[name].get("signature"), f"{name}\0{signed[name]}".encode()):
            raise KitSignatureError(f"{path}: its signature does not verify with the root certificate's key")
