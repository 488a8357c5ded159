"""``project.yml``: reading it and checking it, with one line per problem naming the key path.

The file follows NVFlare's shape (``name``, ``participants``, ``builders``): a participant has a ``name``,
a ``type`` (``server``, ``client`` or ``admin``) and an ``org``; the server has ``host_names``,
``default_host``, ``fed_learn_port`` and ``admin_port``; an admin has a ``role``. Keys this runtime does not
use are ignored, so an NVFlare project file is read as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flruntime.errors import FLRuntimeError
from flruntime.exit_codes import ExitCode
from flruntime.he.keys import HEParams

PARTICIPANT_TYPES = ("server", "client", "admin")
ROLES = ("project_admin", "org_admin", "lead", "member")
#: Builder names (the last part of an NVFlare builder path also works) and what they do here. Certificates,
#: connection configs, scripts and signatures are always made; ``HEBuilder`` adds the CKKS contexts.
BUILDERS = ("WorkspaceBuilder", "StaticFileBuilder", "CertBuilder", "SignatureBuilder", "HEBuilder")
HE_ARGS = ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits", "scheme")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._-]*$")


class ProjectError(FLRuntimeError):
    """The project file is invalid; ``problems`` holds one line per finding."""

    exit_code = ExitCode.INVALID_JOB

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(self.problems[0] + more)


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
class Project:
    """A checked project file.

    Attributes:
        name: the project's name (the CA's CN and the workspace folder).
        description: free text.
        participants: every participant, in file order.
        he: the CKKS parameters when the ``HEBuilder`` is on, else None.
    """

    name: str
    description: str = ""
    participants: tuple[Participant, ...] = field(default_factory=tuple)
    he: HEParams | None = None

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
        params = HEParams(
            int(args.get("poly_modulus_degree", 8192)),
            tuple(int(b) for b in args.get("coeff_mod_bit_sizes", (60, 40, 40))),
            int(args.get("scale_bits", 40)),
        )
        params.check()
    except (TypeError, ValueError) as exc:
        c.add(f"{path}.args", str(exc))
        return None
    return params


def _builders(c: _Checker, raw: Any) -> HEParams | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        c.add("$.builders", "must be a list")
        return None
    he: HEParams | None = None
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
            he = _he_params(c, entry, path) or he
    return he


def check_project(data: Any, label: str = "project.yml") -> Project:
    """Check a parsed project file.

    Args:
        data: the parsed YAML.
        label: the file's name, the first part of each problem line.

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
    he = _builders(c, data.get("builders"))
    if c.problems:
        raise ProjectError(c.problems)
    return Project(name, str(description), tuple(participants), he)


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
    return check_project(data, path.name)
