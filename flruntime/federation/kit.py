"""Reading a participant's startup kit: who it is, where the server is, its certificates.

A kit is what ``flruntime provision`` wrote for one participant (see :mod:`flruntime.provision.kit`). Loading
verifies the kit's signature first, so a changed, added or removed file in ``startup/`` stops the participant
before it connects anywhere.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flruntime.errors import UsageError
from flruntime.provision.kit import CONFIG_FILE, ROOT_CERT
from flruntime.provision.signature import verify_kit

log = logging.getLogger(__name__)

STARTUP = "startup"


@dataclass(frozen=True)
class Member:
    """A participant the server accepts (from its kit)."""

    name: str
    type: str
    org: str
    role: str = ""


@dataclass(frozen=True)
class Kit:
    """A loaded startup kit.

    Attributes:
        root: the kit folder.
        name: the participant's name.
        type: ``server``, ``client`` or ``admin``.
        org: its organisation.
        role: an admin's role.
        project: the project's name.
        server_name: the server's name (its certificate's CN).
        target: ``host:port`` that clients (or, for an admin kit, admins) connect to.
        admin_port: the server's admin port (server kits).
        cert: this participant's certificate (PEM).
        key: its private key (PEM).
        root_cert: the project CA's certificate (PEM).
        members: the participants the server accepts, by name (server kits).
        config: the connection config as written.
    """

    root: Path
    name: str
    type: str
    org: str
    role: str
    project: str
    server_name: str
    target: str
    admin_port: int
    cert: bytes
    key: bytes
    root_cert: bytes
    members: dict[str, Member] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def startup(self) -> Path:
        """The kit's ``startup/`` folder."""
        return self.root / STARTUP

    @property
    def port(self) -> int:
        """The port of :attr:`target`."""
        return int(self.target.rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        """The host of :attr:`target`."""
        return self.target.rsplit(":", 1)[0]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the kit file: {exc.strerror or exc}") from exc


def load_kit(kit_dir: str | Path, verify: bool = True) -> Kit:
    """Load (and by default verify) a startup kit.

    Args:
        kit_dir: the kit folder (the one holding ``startup/``).
        verify: check the kit's signature against its root certificate.

    Raises:
        UsageError: not a kit, an unreadable or malformed connection config.
        KitSignatureError: the kit was changed since provisioning.
    """
    root = Path(kit_dir)
    startup = root / STARTUP
    found = [(kind, startup / name) for kind, name in CONFIG_FILE.items() if (startup / name).is_file()]
    if not found:
        names = ", ".join(CONFIG_FILE.values())
        raise UsageError(f"{root}: not a startup kit (no startup/ folder with {names}); pass the folder provision made")
    kind, config_path = found[0]
    root_cert = _read(startup / ROOT_CERT)
    if verify:
        verify_kit(root, root_cert)
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if kind == "admin":
            return _admin(root, config, root_cert)
        return _site(root, kind, config, root_cert)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"{config_path}: not a valid connection config ({type(exc).__name__}: {exc})") from exc


def _site(root: Path, kind: str, config: dict[str, Any], root_cert: bytes) -> Kit:
    server = config["servers"][0]
    target = str(server["service"]["target"])
    if kind == "server":
        members = {
            str(m["name"]): Member(str(m["name"]), str(m["type"]), str(m.get("org", "")), str(m.get("role", "")))
            for m in config.get("participants", [])
        }
        return Kit(
            root,
            str(server["name"]),
            "server",
            "",
            "",
            str(config.get("project", "")),
            str(server["name"]),
            target,
            int(server.get("admin_port", 0)),
            _read(root / STARTUP / server["ssl_cert"]),
            _read(root / STARTUP / server["ssl_private_key"]),
            root_cert,
            members,
            config,
        )
    client = config["client"]
    return Kit(
        root,
        str(client["name"]),
        "client",
        str(client.get("org", "")),
        "",
        str(config.get("project", "")),
        str(server.get("identity", server["name"])),
        target,
        0,
        _read(root / STARTUP / client["ssl_cert"]),
        _read(root / STARTUP / client["ssl_private_key"]),
        root_cert,
        {},
        config,
    )


def _admin(root: Path, config: dict[str, Any], root_cert: bytes) -> Kit:
    admin = config["admin"]
    return Kit(
        root,
        str(admin["username"]),
        "admin",
        str(admin.get("org", "")),
        str(admin.get("role", "")),
        str(admin.get("project_name", "")),
        str(admin["server_identity"]),
        f"{admin['host']}:{admin['port']}",
        int(admin["port"]),
        _read(root / STARTUP / admin["client_cert"]),
        _read(root / STARTUP / admin["client_key"]),
        root_cert,
        {},
        config,
    )


def local_resources(root: Path) -> dict[str, Any]:
    """A kit's ``local/resources.json`` (the site's GPUs, its job memory and progress limits), or nothing.

    A file that cannot be read is ignored with a warning: the site still runs, with defaults.
    """
    path = root / "local" / "resources.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}
