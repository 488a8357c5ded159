"""``project.yml``: reading it and checking it, with one line per problem naming the key path.

The file follows NVFlare's shape (``name``, ``participants``, ``builders``): a participant has a ``name``,
a ``type`` (``server``, ``client`` or ``admin``) and an ``org``; the server has ``host_names``,
``default_host``, ``fed_learn_port`` and ``admin_port``; an admin has a ``role``. Keys this runtime does not
use are ignored, so an NVFlare project file is read as it is.

Builders with arguments: ``HEBuilder`` (CKKS parameters), ``DockerBuilder`` (the image's Dockerfile) and
``K8sBuilder`` (Kubernetes manifests). With the ``K8sBuilder`` on, the server's certificate also names its
Service's DNS names and every kit connects to the Service (see :func:`_in_cluster`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from flruntime import __version__
from flruntime.errors import FLRuntimeError
from flruntime.exit_codes import ExitCode
from flruntime.he.keys import HEParams

PARTICIPANT_TYPES = ("server", "client", "admin")
ROLES = ("project_admin", "org_admin", "lead", "member")
#: Builder names (the last part of an NVFlare builder path also works) and what they do here. Certificates,
#: connection configs, scripts and signatures are always made; ``HEBuilder`` adds the CKKS contexts,
#: ``DockerBuilder`` writes ``prod_NN/docker/`` and ``K8sBuilder`` ``prod_NN/k8s/`` (and ``docker/``).
BUILDERS = (
    "WorkspaceBuilder",
    "StaticFileBuilder",
    "CertBuilder",
    "SignatureBuilder",
    "HEBuilder",
    "DockerBuilder",
    "K8sBuilder",
)
HE_ARGS = ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "scheme")
DOCKER_ARGS = ("image", "base_image", "extras", "requirements_file")
K8S_ARGS = ("namespace", "image", "storage_size", "storage_class", "access_mode", "job_ports")
#: flruntime's extras an image can install (setup.cfg); ``pt`` is torch's CPU build.
EXTRAS = ("pt", "he", "tracking", "monai")
ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany")
DEFAULT_IMAGE = f"flruntime:{__version__}"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]*$")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")


def dns_label(name: str) -> str:
    """Return a Kubernetes name (an RFC 1035 label: a-z, 0-9, '-', a letter first, 63 at most) for a name.

    ``site-1`` stays ``site-1``; ``Hospital_A.org`` becomes ``hospital-a-org``; ``1st`` becomes ``fl-1st``.
    """
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not label[:1].isalpha():
        label = f"fl-{label}".rstrip("-")
    return label[:63].rstrip("-")


class ProjectError(FLRuntimeError):
    """The project file is invalid; ``problems`` holds one line per finding."""

    exit_code = ExitCode.INVALID_JOB

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(self.problems[0] + more)


class ProvisionError(FLRuntimeError):
    """Provisioning could not finish (no free ``prod_NN`` number, unreadable state, no TenSEAL, a kit too large)."""

    exit_code = ExitCode.INVALID_JOB


@dataclass(frozen=True)
class Participant:
    """One participant of the project.

    Attributes:
        name: the participant's name (the certificate's CN and the kit's folder name).
        type: ``server``, ``client`` or ``admin``.
        org: the organisation (the certificate's O).
        role: an admin's role, empty for the others.
        host_names: the server's DNS names (its name first), empty for the others.
        default_host: the host clients and admins connect to (the server's).
        fed_learn_port: the port clients connect to (the server's).
        admin_port: the port admins connect to (the server's).
    """

    name: str
    type: str
    org: str
    role: str = ""
    host_names: tuple[str, ...] = ()
    default_host: str = ""
    fed_learn_port: int = 8002
    admin_port: int = 8003


@dataclass(frozen=True)
class DockerParams:
    """What the ``DockerBuilder`` writes into ``prod_NN/docker/``.

    Attributes:
        image: the image's name (what ``build.sh`` tags and the Kubernetes manifests run).
        base_image: the Dockerfile's ``FROM`` (a Python 3.11+ image).
        extras: flruntime's extras to install (``pt``: torch's CPU build, ``he``, ``tracking``, ``monai``).
        requirements_file: more pip requirements for the jobs' own code, copied into the image, or None.
    """

    image: str = DEFAULT_IMAGE
    base_image: str = DEFAULT_BASE_IMAGE
    extras: tuple[str, ...] = ("pt",)
    requirements_file: Path | None = None


@dataclass(frozen=True)
class K8sParams:
    """What the ``K8sBuilder`` writes into ``prod_NN/k8s/``.

    Attributes:
        namespace: the namespace of every object.
        image: the image every container runs.
        storage_size: the size of the workspaces' PersistentVolumeClaim.
        storage_class: its storage class, or None for the cluster's default.
        access_mode: ``ReadWriteOnce`` (one node) or ``ReadWriteMany`` (pods on several nodes).
        service: the server's Service name (a DNS label made from the server's name).
        job_ports: how many ports the server's job processes may listen on (one per running job), right after
            the server's own ports; the Service exposes them and the server is told (``FLRUNTIME_JOB_PORTS``).
    """

    namespace: str
    image: str = DEFAULT_IMAGE
    storage_size: str = "10Gi"
    storage_class: str | None = None
    access_mode: str = "ReadWriteOnce"
    service: str = ""
    job_ports: int = 4


@dataclass(frozen=True)
class Project:
    """A checked project file.

    Attributes:
        name: the project's name (the CA's CN and the workspace folder).
        description: free text.
        participants: every participant, in file order.
        he: the CKKS parameters when the ``HEBuilder`` is on, else None.
        docker: the image's Dockerfile when the ``DockerBuilder`` or the ``K8sBuilder`` is on, else None.
        k8s: the Kubernetes manifests when the ``K8sBuilder`` is on, else None.
    """

    name: str
    description: str = ""
    participants: tuple[Participant, ...] = field(default_factory=tuple)
    he: HEParams | None = None
    docker: DockerParams | None = None
    k8s: K8sParams | None = None

    @property
    def server(self) -> Participant:
        """The one server."""
        return next(p for p in self.participants if p.type == "server")

    def of_type(self, kind: str) -> list[Participant]:
        """Return the participants of one type, in file order."""
        return [p for p in self.participants if p.type == kind]


class _Checker:
    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{self.label}: {path}: {message}")

    def name(self, data: Mapping[str, Any], key: str, path: str) -> str:
        value = data.get(key)
        if value is None:
            self.add(path, f"missing required key '{key}'")
            return ""
        if not isinstance(value, str) or not _NAME.match(value):
            self.add(
                f"{path}.{key}",
                f"must be a name of letters, digits and @ . _ - (starting with a letter or digit), got {value!r}",
            )
            return ""
        return value

    def port(self, data: Mapping[str, Any], key: str, path: str, default: int) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.add(f"{path}.{key}", f"must be a port number 1 to 65535, got {value!r}")
            return default
        return value


def _participant(c: _Checker, raw: Any, path: str) -> Participant | None:
    if not isinstance(raw, Mapping):
        c.add(path, f"must be a mapping with name, type and org, got {type(raw).__name__}")
        return None
    name = c.name(raw, "name", path)
    kind = raw.get("type")
    if kind not in PARTICIPANT_TYPES:
        c.add(f"{path}.type", f"must be one of {', '.join(PARTICIPANT_TYPES)}, got {kind!r}")
        return None
    org = c.name(raw, "org", path)
    if kind == "admin":
        role = raw.get("role")
        if role not in ROLES:
            c.add(f"{path}.role", f"must be one of {', '.join(ROLES)}")
            return None
        return Participant(name, kind, org, role=role)
    if kind == "client":
        return Participant(name, kind, org)
    hosts = raw.get("host_names", [])
    if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
        c.add(f"{path}.host_names", "must be a list of host names")
        hosts = []
    host_names = tuple(dict.fromkeys([name, *hosts]))
    default_host = raw.get("default_host", name)
    if not isinstance(default_host, str) or not default_host:
        c.add(f"{path}.default_host", f"must be a host name, got {default_host!r}")
        default_host = name
    elif default_host not in host_names:
        host_names = (*host_names, default_host)
    fed = c.port(raw, "fed_learn_port", path, 8002)
    admin = c.port(raw, "admin_port", path, 8003)
    return Participant(
        name, kind, org, host_names=host_names, default_host=default_host, fed_learn_port=fed, admin_port=admin
    )


def _he_params(c: _Checker, raw: Mapping[str, Any], path: str) -> HEParams | None:
    args = raw.get("args") or {}
    if not isinstance(args, Mapping):
        c.add(f"{path}.args", "must be a mapping")
        return None
    for key in args:
        if key not in HE_ARGS:
            c.add(f"{path}.args.{key}", f"unknown argument (known: {', '.join(HE_ARGS)})")
            return None
    if args.get("scheme", "CKKS") != "CKKS":
        c.add(f"{path}.args.scheme", f"only CKKS is supported, got {args['scheme']!r}")
        return None
    try:
        default = HEParams()  # the same defaults as `flruntime he keys`
        params = HEParams(
            int(args.get("poly_modulus_degree", default.poly_modulus_degree)),
            tuple(int(b) for b in args.get("coeff_mod_bit_sizes", default.coeff_mod_bit_sizes)),
            int(args.get("scale_bits", default.scale_bits)),
        )
        params.check()
    except (TypeError, ValueError) as exc:
        c.add(f"{path}.args", str(exc))
        return None
    return params


def _args(c: _Checker, raw: Mapping[str, Any], path: str, known: tuple[str, ...]) -> Mapping[str, Any] | None:
    args = raw.get("args") or {}
    if not isinstance(args, Mapping):
        c.add(f"{path}.args", "must be a mapping")
        return None
    unknown = [key for key in args if key not in known]
    for key in unknown:
        c.add(f"{path}.args.{key}", f"unknown argument (known: {', '.join(known)})")
    return None if unknown else args


def _text(c: _Checker, args: Mapping[str, Any], key: str, path: str, pattern: re.Pattern[str], what: str) -> str | None:
    value = args.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        c.add(f"{path}.args.{key}", f"must be {what}, got {value!r}")
        return None
    return value


def _docker_params(c: _Checker, raw: Mapping[str, Any], path: str, base_dir: Path | None) -> DockerParams | None:
    args = _args(c, raw, path, DOCKER_ARGS)
    if args is None:
        return None
    before = len(c.problems)
    image = _text(c, args, "image", path, _IMAGE, "an image name such as flruntime:0.1.0")
    base = _text(c, args, "base_image", path, _IMAGE, "an image name such as python:3.11-slim")
    extras = args.get("extras", list(DockerParams.extras))
    if not isinstance(extras, list) or not all(isinstance(e, str) and e in EXTRAS for e in extras):
        c.add(f"{path}.args.extras", f"must be a list of flruntime extras ({', '.join(EXTRAS)}), got {extras!r}")
    requirements: Path | None = None
    value = args.get("requirements_file")
    if value is not None:
        requirements = (base_dir or Path.cwd()) / str(value)
        if not isinstance(value, str) or not value or not requirements.is_file():
            c.add(f"{path}.args.requirements_file", f"no such file {value!r} (relative to the project file's folder)")
    if len(c.problems) > before:
        return None
    return DockerParams(image or DEFAULT_IMAGE, base or DEFAULT_BASE_IMAGE, tuple(dict.fromkeys(extras)), requirements)


def _k8s_params(c: _Checker, raw: Mapping[str, Any], path: str, project: str) -> K8sParams | None:
    args = _args(c, raw, path, K8S_ARGS)
    if args is None:
        return None
    before = len(c.problems)
    namespace = _text(c, args, "namespace", path, _DNS_LABEL, "a Kubernetes namespace (a-z, 0-9, -; 63 at most)")
    image = _text(c, args, "image", path, _IMAGE, "an image name such as flruntime:0.1.0")
    size = _text(c, args, "storage_size", path, _QUANTITY, "a Kubernetes quantity such as 10Gi")
    storage_class = _text(c, args, "storage_class", path, _DNS_SUBDOMAIN, "a storage class name")
    mode = args.get("access_mode", "ReadWriteOnce")
    if mode not in ACCESS_MODES:
        c.add(f"{path}.args.access_mode", f"must be one of {', '.join(ACCESS_MODES)}, got {mode!r}")
    job_ports = args.get("job_ports", 4)
    if isinstance(job_ports, bool) or not isinstance(job_ports, int) or not 1 <= job_ports <= 100:
        c.add(f"{path}.args.job_ports", f"must be a number of ports from 1 to 100, got {job_ports!r}")
    if len(c.problems) > before:
        return None
    return K8sParams(namespace or dns_label(project), image or "", size or "10Gi", storage_class, mode, "", job_ports)


@dataclass
class _Builders:
    he: HEParams | None = None
    docker: DockerParams | None = None
    k8s: K8sParams | None = None
    k8s_path: str = ""
    docker_args: Mapping[str, Any] = field(default_factory=dict)


def _builders(c: _Checker, raw: Any, project: str, base_dir: Path | None) -> _Builders:
    found = _Builders()
    if raw is None:
        return found
    if not isinstance(raw, list):
        c.add("$.builders", "must be a list")
        return found
    for i, entry in enumerate(raw):
        path = f"$.builders[{i}]"
        builder = entry.get("path") if isinstance(entry, Mapping) else None
        if not isinstance(builder, str):
            c.add(path, "must be a mapping with a 'path' (a builder name) and optional 'args'")
            continue
        short = builder.rsplit(".", 1)[-1]
        if short not in BUILDERS:
            c.add(f"{path}.path", f"unknown builder {builder!r} (known: {', '.join(BUILDERS)})")
        elif short == "HEBuilder":
            found.he = _he_params(c, entry, path) or found.he
        elif short == "DockerBuilder":
            found.docker = _docker_params(c, entry, path, base_dir) or found.docker
            found.docker_args = entry.get("args") or {}
        elif short == "K8sBuilder":
            found.k8s = _k8s_params(c, entry, path, project) or found.k8s
            found.k8s_path = path
    return found


def _in_cluster(c: _Checker, participants: list[Participant], b: _Builders) -> list[Participant]:
    """Fit the project to the ``K8sBuilder``'s cluster: unique Kubernetes names, kits that reach the Service.

    The server's Service is named after the server (made a DNS label). Every kit's connection config targets
    that Service (the server's ``default_host`` becomes the Service name, which resolves in the namespace),
    and the server's certificate names it in every form a pod may use (``svc``, ``svc.ns``, ``svc.ns.svc``,
    ``svc.ns.svc.cluster.local``), besides the host names of the project file.
    """
    assert b.k8s is not None
    labels: dict[str, str] = {}
    for p in participants:
        if p.type == "admin":
            continue
        label = dns_label(p.name)
        if label in labels:
            c.add(
                "$.participants",
                f"{labels[label]!r} and {p.name!r} both become the Kubernetes name {label!r} (K8sBuilder): rename one",
            )
        labels[label] = p.name
    server = next(p for p in participants if p.type == "server")
    svc, ns = dns_label(server.name), b.k8s.namespace
    b.k8s = replace(b.k8s, service=svc)
    names = (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.cluster.local")
    moved = replace(server, default_host=svc, host_names=tuple(dict.fromkeys([*server.host_names, *names])))
    return [moved if p is server else p for p in participants]


def _images(c: _Checker, b: _Builders, he: bool) -> None:
    """Give the Dockerfile and the manifests one image name, and the Dockerfile its default extras.

    The ``K8sBuilder`` needs an image, so it brings the ``DockerBuilder`` (with its defaults) when that is not
    listed. The image may be named by either builder, or by both when they agree. Unless ``extras`` is given,
    the image installs ``pt``, and ``he`` too when the ``HEBuilder`` is on.
    """
    if b.docker is None and b.k8s is None:
        return
    docker = b.docker or DockerParams()
    if b.k8s is not None:
        if b.k8s.image and "image" in b.docker_args and b.k8s.image != docker.image:
            c.add(
                f"{b.k8s_path}.args.image",
                f"{b.k8s.image!r} differs from the DockerBuilder's image {docker.image!r}: give it once",
            )
        docker = replace(docker, image=b.k8s.image or docker.image)
        b.k8s = replace(b.k8s, image=docker.image)
    if he and "extras" not in b.docker_args and "he" not in docker.extras:
        docker = replace(docker, extras=(*docker.extras, "he"))
    b.docker = docker


def check_project(data: Any, label: str = "project.yml", base_dir: Path | None = None) -> Project:
    """Check a parsed project file.

    Args:
        data: the parsed YAML.
        label: the file's name, the first part of each problem line.
        base_dir: the folder relative paths in builder arguments start from (the project file's; default: the
            current folder).

    Returns:
        The project.

    Raises:
        ProjectError: every problem, one line each (``LABEL: $.path: message``).
    """
    c = _Checker(label)
    if not isinstance(data, Mapping):
        c.add("$", f"must be a mapping with name and participants, got {type(data).__name__}")
        raise ProjectError(c.problems)
    name = c.name(data, "name", "$")
    description = data.get("description") or ""
    raw = data.get("participants")
    participants: list[Participant] = []
    if not isinstance(raw, list) or not raw:
        c.add("$.participants", "must be a non-empty list of participants")
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(raw):
            p = _participant(c, item, f"$.participants[{i}]")
            if p is None or not p.name:
                continue
            if p.name in seen:
                c.add(f"$.participants[{i}].name", f"duplicate name {p.name!r} (also $.participants[{seen[p.name]}])")
                continue
            seen[p.name] = i
            participants.append(p)
        servers = sum(1 for item in raw if isinstance(item, Mapping) and item.get("type") == "server")
        if servers != 1:
            c.add("$.participants", f"exactly one participant of type server is needed, found {servers}")
    builders = _builders(c, data.get("builders"), name or "flruntime", base_dir)
    _images(c, builders, builders.he is not None)
    if builders.k8s is not None and not c.problems:
        participants = _in_cluster(c, participants, builders)
    if c.problems:
        raise ProjectError(c.problems)
    return Project(name, str(description), tuple(participants), builders.he, builders.docker, builders.k8s)


def load_project(path: str | Path) -> Project:
    """Read and check a project file.

    Args:
        path: the ``project.yml``.

    Returns:
        The project.

    Raises:
        ProjectError: the file is missing, not YAML, or invalid (one line per problem).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError([f"{path}: cannot read the project file: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProjectError([f"{path.name}: {where}not valid YAML: {problem}"]) from exc
    return check_project(data, path.name, path.parent)
