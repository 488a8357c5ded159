"""``provision``: the project's state between runs, and one signed kit per participant per run.

``WORKSPACE/<project>/state/`` keeps what must survive a run and never goes into a kit: the CA's key and
certificate, each participant's key and certificate, and the HE contexts. A later run reuses them, so adding
a participant re-keys nobody; a certificate is issued again (for the same key) only when its subject or
names changed or it expires within 30 days. Each run writes a new ``prod_NN`` folder (00, 01, … 99), with
``docker/`` (:mod:`~flruntime.provision.docker`) and ``k8s/`` (:mod:`~flruntime.provision.k8s`) beside the kits
when those builders are on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT, HEParams, make_contexts
from flruntime.provision import certs
from flruntime.provision.docker import write_docker
from flruntime.provision.k8s import write_manifests
from flruntime.provision.kit import Secrets, write_kit
from flruntime.provision.project import Project, ProvisionError
from flruntime.provision.signature import sign_kit

STATE = "state"
MAX_PROD = 99


@dataclass
class ProvisionResult:
    """What a run wrote.

    Attributes:
        prod_dir: the new ``prod_NN`` folder.
        kits: each participant's kit folder, by name.
        new: participants that got a new key in this run.
        reissued: existing participants whose certificate was issued again (same key).
        ca_created: whether this run created the project CA.
        docker_dir: the image's build context (``prod_NN/docker``) when the Docker or K8s builder is on.
        k8s_dir: the Kubernetes manifests (``prod_NN/k8s``) when the K8s builder is on.
    """

    prod_dir: Path
    kits: dict[str, Path] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    ca_created: bool = False
    docker_dir: Path | None = None
    k8s_dir: Path | None = None


def _next_prod(root: Path) -> Path:
    used = [int(m.group(1)) for d in root.glob("prod_*") if (m := re.fullmatch(r"prod_(\d\d)", d.name))]
    number = max(used, default=-1) + 1
    if number > MAX_PROD:
        raise ProvisionError(f"{root}: prod_{MAX_PROD} exists: remove old prod_NN folders to provision again")
    return root / f"prod_{number:02d}"


def _ca(state: Path, project: str) -> tuple[certs.rsa.RSAPrivateKey, x509.Certificate, bool]:
    key_path, cert_path = state / "rootCA.key", state / "rootCA.pem"
    if key_path.exists() and cert_path.exists():
        try:
            return certs.load_key(key_path.read_bytes()), x509.load_pem_x509_certificate(cert_path.read_bytes()), False
        except (ValueError, TypeError) as exc:
            raise ProvisionError(f"{key_path}: cannot load the project CA: {exc}") from exc
    key, cert = certs.make_ca(project)
    certs.write_private(key_path, certs.key_pem(key))
    cert_path.write_bytes(certs.cert_pem(cert))
    return key, cert, True


def _he_contexts(state: Path, params: HEParams) -> tuple[bytes, bytes]:
    folder = state / "he"
    meta = folder / "params.json"
    wanted = {
        "poly_modulus_degree": params.poly_modulus_degree,
        "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
        "scale_bits": params.scale_bits,
    }
    public_path, secret_path = folder / SERVER_CONTEXT, folder / CLIENT_CONTEXT
    if public_path.exists() and secret_path.exists() and meta.exists() and json.loads(meta.read_text()) == wanted:
        return public_path.read_bytes(), secret_path.read_bytes()
    try:
        public, secret = make_contexts(params)
    except ImportError as exc:
        raise ProvisionError(f"the HEBuilder needs TenSEAL: {exc}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    public_path.write_bytes(public)
    certs.write_private(secret_path, secret)
    meta.write_text(json.dumps(wanted) + "\n")
    return public, secret


def provision(project: Project, workspace: str | Path) -> ProvisionResult:
    """Write one signed startup kit per participant into a new ``WORKSPACE/<project>/prod_NN``.

    Args:
        project: the checked project.
        workspace: the workspace folder.

    Returns:
        What was written.

    Raises:
        ProvisionError: no free ``prod_NN`` number, unreadable state, the HE builder without TenSEAL, or a kit
            too large for a Kubernetes Secret.
    """
    root = Path(workspace) / project.name
    state = root / STATE
    state.mkdir(parents=True, exist_ok=True)
    prod = _next_prod(root)
    ca_key, ca_cert, created = _ca(state, project.name)
    result = ProvisionResult(prod, ca_created=created)
    he_public = he_secret = None
    if project.he is not None:
        he_public, he_secret = _he_contexts(state, project.he)
    root_pem = certs.cert_pem(ca_cert)
    people = state / "participants"
    for p in project.participants:
        key_path, cert_path = people / f"{p.name}.key", people / f"{p.name}.crt"
        if key_path.exists():
            key = certs.load_key(key_path.read_bytes())
        else:
            key = certs.new_key()
            certs.write_private(key_path, certs.key_pem(key))
            result.new.append(p.name)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes()) if cert_path.exists() else None
        if cert is None or cert.public_key() != key.public_key() or not certs.matches(cert, p, ca_cert):
            if cert is not None and p.name not in result.new:
                result.reissued.append(p.name)
            cert = certs.issue(p, key, ca_key, ca_cert)
            cert_path.write_bytes(certs.cert_pem(cert))
        secrets = Secrets(cert_path.read_bytes(), key_path.read_bytes(), root_pem, he_public, he_secret)
        kit = write_kit(prod / p.name, project, p, secrets)
        sign_kit(kit, ca_key)
        result.kits[p.name] = kit
    if project.docker is not None:
        result.docker_dir = write_docker(prod, project)
    if project.k8s is not None:
        result.k8s_dir = write_manifests(prod, project, result.kits)
    return result
