"""The ``K8sBuilder``: ``prod_NN/k8s/``, Kubernetes manifests that run the server and every client.

Files (``kubectl apply -f prod_NN/k8s/`` reads them in this order)::

    00-namespace.yaml             the Namespace
    01-workspaces-pvc.yaml        one PersistentVolumeClaim; each participant gets the folder named after it
    10-<name>-kit-secret.yaml     per server and client: a Secret holding its kit's startup/ files (mode 0600:
                                  they hold the private key)
    20-<server>-service.yaml      the server's Service: fed_learn_port, admin_port and the job processes' ports
    30-<name>-deployment.yaml     per server and client: one pod running
                                  ``python -m flruntime site start --kit /kits/<name> --workspace /workspace/<name>``
                                  with the Secret mounted read-only at /kits/<name>/startup and the claim's
                                  <name> folder at /workspace/<name>
    README.md                     the commands to build the image, apply, and read the logs

Admins get no Deployment: their consoles run where the admins are. The pods run as uid/gid 10001 (the image's
user) with fsGroup 10001, so the kit files (mode 0440) and the claim are theirs to read and write.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from flruntime.provision.certs import write_private
from flruntime.provision.docker import UID
from flruntime.provision.project import K8sParams, Participant, Project, ProvisionError, dns_label

KITS = "/kits"
WORKSPACE = "/workspace"
PVC = "workspaces"
#: what a Secret may hold (Kubernetes refuses larger ones)
SECRET_LIMIT = 1024 * 1024
KIT_MODE = 0o440


def _labels(project: Project, p: Participant | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "flruntime", "app.kubernetes.io/instance": dns_label(project.name)}
    if p is not None:
        labels |= {"app.kubernetes.io/component": p.type, "flruntime/participant": dns_label(p.name)}
    return labels


def _meta(name: str, k8s: K8sParams, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": k8s.namespace, "labels": labels}


def _selector(project: Project, p: Participant) -> dict[str, str]:
    return {"app.kubernetes.io/instance": dns_label(project.name), "flruntime/participant": dns_label(p.name)}


def secret_name(p: Participant) -> str:
    """Return the name of the Secret holding a participant's ``startup/`` files."""
    return f"{dns_label(p.name)[:59].rstrip('-')}-kit"


def _secret(project: Project, k8s: K8sParams, p: Participant, kit: Path) -> dict[str, Any]:
    startup = kit / "startup"
    data: dict[str, str] = {}
    size = 0
    for path in sorted(startup.iterdir()):
        if not path.is_file():
            raise ProvisionError(f"{path}: a kit's startup/ folder must hold only files to become a Secret")
        raw = path.read_bytes()
        size += len(raw)
        data[path.name] = base64.b64encode(raw).decode("ascii")
    if size > SECRET_LIMIT:
        raise ProvisionError(
            f"{startup}: {size} bytes, more than the {SECRET_LIMIT} bytes a Kubernetes Secret holds "
            "(a smaller HEBuilder poly_modulus_degree makes smaller HE contexts)"
        )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(secret_name(p), k8s, _labels(project, p)),
        "type": "Opaque",
        "data": data,
    }


def job_port_range(server: Participant, k8s: K8sParams) -> tuple[int, int]:
    """The ports the server's job processes listen on: right after the server's own ports."""
    first = max(server.fed_learn_port, server.admin_port) + 1
    return first, first + k8s.job_ports - 1


def _ports(server: Participant, k8s: K8sParams) -> list[tuple[str, int]]:
    ports = [("fed-learn", server.fed_learn_port)]
    if server.admin_port != server.fed_learn_port:
        ports.append(("admin", server.admin_port))
    first, last = job_port_range(server, k8s)
    ports.extend((f"job-{port - first}", port) for port in range(first, last + 1))
    return ports


def site_command(p: Participant) -> list[str]:
    """Return the container's command for a participant."""
    return [
        "python",
        "-m",
        "flruntime",
        "site",
        "start",
        "--kit",
        f"{KITS}/{p.name}",
        "--workspace",
        f"{WORKSPACE}/{p.name}",
    ]


def _deployment(project: Project, k8s: K8sParams, p: Participant) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": dns_label(p.name),
        "image": k8s.image,
        "imagePullPolicy": "IfNotPresent",
        "command": site_command(p),
        "volumeMounts": [
            {"name": "kit", "mountPath": f"{KITS}/{p.name}/startup", "readOnly": True},
            {"name": "workspace", "mountPath": f"{WORKSPACE}/{p.name}", "subPath": p.name},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if p.type == "server":
        container["ports"] = [{"name": n, "containerPort": port, "protocol": "TCP"} for n, port in _ports(p, k8s)]
        first, last = job_port_range(p, k8s)
        container["env"] = [{"name": "FLRUNTIME_JOB_PORTS", "value": f"{first}-{last}"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(dns_label(p.name), k8s, _labels(project, p)),
        "spec": {
            "replicas": 1,
            # never two pods of one participant (one identity, one workspace folder)
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(project, p)},
            "template": {
                "metadata": {"labels": _labels(project, p)},
                "spec": {
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": UID,
                        "runAsGroup": UID,
                        "fsGroup": UID,
                    },
                    "containers": [container],
                    "volumes": [
                        {"name": "kit", "secret": {"secretName": secret_name(p), "defaultMode": KIT_MODE}},
                        {"name": "workspace", "persistentVolumeClaim": {"claimName": PVC}},
                    ],
                },
            },
        },
    }


def _service(project: Project, k8s: K8sParams) -> dict[str, Any]:
    server = project.server
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(k8s.service, k8s, _labels(project, server)),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(project, server),
            "ports": [
                {"name": n, "port": port, "targetPort": port, "protocol": "TCP"} for n, port in _ports(server, k8s)
            ],
        },
    }


def _pvc(project: Project, k8s: K8sParams) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [k8s.access_mode],
        "resources": {"requests": {"storage": k8s.storage_size}},
    }
    if k8s.storage_class:
        spec["storageClassName"] = k8s.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(PVC, k8s, _labels(project)),
        "spec": spec,
    }


def manifests(project: Project, kits: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Return every manifest by file name (see the module's docstring).

    Args:
        project: the project (its ``k8s`` is set).
        kits: each participant's kit folder, by name.

    Raises:
        ProvisionError: a kit's ``startup/`` is too large for a Secret or holds a folder.
    """
    assert project.k8s is not None
    k8s = project.k8s
    out: dict[str, dict[str, Any]] = {
        "00-namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": k8s.namespace, "labels": _labels(project)},
        },
        f"01-{PVC}-pvc.yaml": _pvc(project, k8s),
    }
    sites = [p for p in project.participants if p.type in ("server", "client")]
    for p in sites:
        out[f"10-{secret_name(p)}-secret.yaml"] = _secret(project, k8s, p, kits[p.name])
    out[f"20-{k8s.service}-service.yaml"] = _service(project, k8s)
    for p in sites:
        out[f"30-{dns_label(p.name)}-deployment.yaml"] = _deployment(project, k8s, p)
    return out


def _readme(project: Project, prod_dir: Path) -> str:
    assert project.k8s is not None and project.docker is not None
    k8s, server = project.k8s, project.server
    clients = ", ".join(dns_label(p.name) for p in project.of_type("client")) or "none"
    return f"""# Kubernetes manifests of project {project.name}

Written by `flruntime provision` (K8sBuilder). Every object is in namespace `{k8s.namespace}`.

1. Build the image the pods run, `{k8s.image}` (see `../docker/Dockerfile`), and make it reachable from the
   cluster (push it to a registry, or e.g. `kind load docker-image {k8s.image}`):

       ../docker/build.sh /path/to/flruntime      # a flruntime checkout or sdist

2. Apply everything (the Namespace first, then the claim, the kit Secrets, the Service, the Deployments):

       kubectl apply -f {prod_dir.name}/k8s/

3. Watch: `kubectl -n {k8s.namespace} get pods`, `kubectl -n {k8s.namespace} logs deploy/{dns_label(server.name)}`
   (clients: {clients}).

The clients reach the server at `{k8s.service}:{server.fed_learn_port}` (Service `{k8s.service}`); the server's
certificate names `{k8s.service}`, `{k8s.service}.{k8s.namespace}`, `{k8s.service}.{k8s.namespace}.svc` and
`{k8s.service}.{k8s.namespace}.svc.cluster.local`. An admin console outside the cluster connects to
`{k8s.service}:{server.admin_port}` too: e.g. `kubectl -n {k8s.namespace} port-forward svc/{k8s.service}
{server.admin_port}` with `127.0.0.1 {k8s.service}` in the admin's /etc/hosts. The claim
`{PVC}` ({k8s.storage_size}, {k8s.access_mode}) holds each participant's workspace in a folder named after it;
with pods on several nodes it needs a storage class that offers ReadWriteMany (K8sBuilder args
`access_mode: ReadWriteMany`, `storage_class`). The `10-*-secret.yaml` files hold private keys: keep them
like the kits.
"""


def write_manifests(prod_dir: Path, project: Project, kits: dict[str, Path]) -> Path:
    """Write ``prod_dir/k8s/`` (the Secrets with mode 0600).

    Args:
        prod_dir: the run's ``prod_NN`` folder.
        project: the project (its ``k8s`` is set).
        kits: each participant's kit folder, by name (already signed).

    Returns:
        The ``k8s`` folder.
    """
    out = prod_dir / "k8s"
    out.mkdir(parents=True, exist_ok=True)
    for name, manifest in manifests(project, kits).items():
        text = f"# {manifest['kind']} of project {project.name}; written by `flruntime provision` (K8sBuilder)\n"
        text += yaml.safe_dump(manifest, sort_keys=False)
        if manifest["kind"] == "Secret":
            write_private(out / name, text.encode())
        else:
            (out / name).write_text(text, encoding="utf-8")
    (out / "README.md").write_text(_readme(project, prod_dir), encoding="utf-8")
    return out
