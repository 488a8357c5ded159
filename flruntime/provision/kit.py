"""Writing one participant's startup kit: certificates, connection config, scripts, HE context.

Layout (``KIT`` = ``WORKSPACE/<project>/prod_NN/<participant>``)::

    KIT/startup/   rootCA.pem, server.crt + server.key (server) or client.crt + client.key (client, admin),
                   fed_server.json | fed_client.json | fed_admin.json, start.sh, sub_start.sh, stop.sh
                   (server, client) or fl_admin.sh (admin), server_context.tenseal (server) or
                   client_context.tenseal (client) when the HE builder is on, signature.json
    KIT/local/     the site's own settings (not signed; empty until the runtime reads any)
    KIT/transfer/  job folders to upload / results downloaded (admin)
    KIT/readme.txt

The scripts run ``python3 -m flruntime site start --kit KIT`` (server and clients) and
``python3 -m flruntime admin --kit KIT`` (admins: the admin console).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flruntime.he.keys import CLIENT_CONTEXT, SERVER_CONTEXT
from flruntime.provision.certs import write_private
from flruntime.provision.project import Participant, Project

ROOT_CERT = "rootCA.pem"
CONFIG_FILE = {"server": "fed_server.json", "client": "fed_client.json", "admin": "fed_admin.json"}
SCHEME = "grpc"


@dataclass(frozen=True)
class Secrets:
    """What one participant's kit holds of the project's keys.

    Attributes:
        cert: the participant's certificate (PEM).
        key: the participant's private key (PEM).
        root_cert: the project CA's certificate (PEM).
        he_public: the server's HE context (no secret key), or None.
        he_secret: the clients' HE context (with the secret key), or None.
    """

    cert: bytes
    key: bytes
    root_cert: bytes
    he_public: bytes | None = None
    he_secret: bytes | None = None


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


def connection_config(project: Project, p: Participant) -> dict[str, Any]:
    """Return the content of a participant's ``fed_server.json`` / ``fed_client.json`` / ``fed_admin.json``."""
    server = project.server
    service = {"target": f"{server.default_host}:{server.fed_learn_port}", "scheme": SCHEME}
    if p.type == "server":
        return {
            "format_version": 2,
            "project": project.name,
            "servers": [
                {
                    "name": server.name,
                    "service": service,
                    "host_names": list(server.host_names),
                    "admin_port": server.admin_port,
                    "ssl_private_key": "server.key",
                    "ssl_cert": "server.crt",
                    "ssl_root_cert": ROOT_CERT,
                    "connection_security": "mtls",
                    **({"he_context": SERVER_CONTEXT} if project.he else {}),
                }
            ],
            # who may connect: the server refuses a certificate whose name is not listed here
            "participants": [
                {"name": q.name, "type": q.type, "org": q.org, **({"role": q.role} if q.role else {})}
                for q in project.participants
                if q.type != "server"
            ],
        }
    if p.type == "client":
        return {
            "format_version": 2,
            "project": project.name,
            "servers": [{"name": server.name, "service": service, "identity": server.name}],
            "client": {
                "name": p.name,
                "org": p.org,
                "ssl_private_key": "client.key",
                "ssl_cert": "client.crt",
                "ssl_root_cert": ROOT_CERT,
                "connection_security": "mtls",
                **({"he_context": CLIENT_CONTEXT} if project.he else {}),
            },
        }
    return {
        "format_version": 1,
        "admin": {
            "project_name": project.name,
            "username": p.name,
            "org": p.org,
            "role": p.role,
            "server_identity": server.name,
            "scheme": SCHEME,
            "host": server.default_host,
            "port": server.admin_port,
            "connection_security": "mtls",
            "uid_source": "cert",
            "with_file_transfer": True,
            "upload_dir": "transfer",
            "download_dir": "transfer",
            "client_key": "client.key",
            "client_cert": "client.crt",
            "ca_cert": ROOT_CERT,
        },
    }


_HEAD = """#!/usr/bin/env bash
# {what} of {name} ({type}) in project {project}; written by `flruntime provision`.
set -u
STARTUP="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
KIT="$(dirname "$STARTUP")"
PYTHON="${{PYTHON:-python3}}"
"""

_START = """
# runs sub_start.sh in the background; its output goes to KIT/log.txt
nohup "$STARTUP/sub_start.sh" "$@" >> "$KIT/log.txt" 2>&1 &
echo "{name}: started (pid $!), log in $KIT/log.txt; stop with $STARTUP/stop.sh"
"""

_SUB_START = """
# Runs `flruntime site start --kit KIT` and starts it again when it ends, until KIT/shutdown.fl exists
# (stop.sh writes it) or with --once. KIT/restart.fl asks for a restart without the 5-second pause.
# Exit codes 1 (a tampered or invalid kit) and 2 (usage) stop the loop: starting again would not help.
ONCE=0
for arg in "$@"; do
  if [ "$arg" = "--once" ]; then ONCE=1; fi
done
rm -f "$KIT/shutdown.fl" "$KIT/restart.fl"
echo $$ > "$KIT/pid.fl"
RC=0
while [ ! -f "$KIT/shutdown.fl" ]; do
  "$PYTHON" -m flruntime site start --kit "$KIT" &
  CHILD=$!
  echo "$CHILD" > "$KIT/child_pid.fl"
  wait "$CHILD"
  RC=$?
  if [ -f "$KIT/shutdown.fl" ] || [ "$ONCE" = 1 ] || [ "$RC" = 1 ] || [ "$RC" = 2 ]; then
    break
  fi
  if [ -f "$KIT/restart.fl" ]; then
    rm -f "$KIT/restart.fl"
  else
    echo "{name}: exited with code $RC; restarting in 5 s"
    sleep 5
  fi
done
rm -f "$KIT/pid.fl" "$KIT/child_pid.fl"
echo "{name}: stopped (last exit code $RC)"
exit "$RC"
"""

_STOP = """
# asks the restart loop to end, then stops the running process
touch "$KIT/shutdown.fl"
if [ -f "$KIT/child_pid.fl" ]; then kill "$(cat "$KIT/child_pid.fl")" 2>/dev/null; fi
echo "{name}: stop requested"
"""

_ADMIN = """
# the admin console: submit_job, list_jobs, abort_job, download_job, check_status, ... (help lists them)
exec "$PYTHON" -m flruntime admin --kit "$KIT" "$@"
"""


def _scripts(project: Project, p: Participant) -> dict[str, str]:
    fmt = {"name": p.name, "type": p.type, "project": project.name}
    if p.type == "admin":
        return {"fl_admin.sh": (_HEAD + _ADMIN).format(what="Admin console", **fmt)}
    return {
        "start.sh": (_HEAD + _START).format(what="Start", **fmt),
        "sub_start.sh": (_HEAD + _SUB_START).format(what="Restart loop", **fmt),
        "stop.sh": (_HEAD + _STOP).format(what="Stop", **fmt),
    }


def _readme(project: Project, p: Participant) -> str:
    if p.type == "admin":
        use = "startup/fl_admin.sh opens the admin console (`flruntime admin --kit <this folder>`)."
    else:
        use = (
            "startup/start.sh starts this participant in the background (startup/sub_start.sh restarts it when "
            "it ends); startup/stop.sh stops it. They run `flruntime site start --kit <this folder>`."
        )
    return (
        f"Startup kit of {p.name} ({p.type}, org {p.org}) in project {project.name}.\n\n{use}\n\n"
        "startup/ is signed by the project CA (startup/signature.json): changing, adding or removing a file\n"
        "there makes the kit fail verification. Keep the private key (startup/*.key) and any\n"
        "client_context.tenseal secret. local/ holds this site's own settings and is not signed.\n"
    )


def write_kit(kit_dir: Path, project: Project, p: Participant, secrets: Secrets) -> Path:
    """Write a participant's kit (without the signature; :func:`~flruntime.provision.signature.sign_kit` adds it).

    Args:
        kit_dir: the kit folder (created).
        project: the project.
        p: the participant.
        secrets: its certificate and key, the root certificate and the HE contexts.

    Returns:
        The kit folder.
    """
    startup = kit_dir / "startup"
    stem = "server" if p.type == "server" else "client"
    _write(startup / ROOT_CERT, secrets.root_cert)
    _write(startup / f"{stem}.crt", secrets.cert)
    write_private(startup / f"{stem}.key", secrets.key)
    _write(startup / CONFIG_FILE[p.type], _json(connection_config(project, p)))
    for name, text in _scripts(project, p).items():
        _write(startup / name, text, 0o755)
    if p.type == "server" and secrets.he_public is not None:
        _write(startup / SERVER_CONTEXT, secrets.he_public)
    if p.type == "client" and secrets.he_secret is not None:
        write_private(startup / CLIENT_CONTEXT, secrets.he_secret)
    (kit_dir / "local").mkdir(exist_ok=True)
    (kit_dir / "transfer").mkdir(exist_ok=True)
    _write(kit_dir / "readme.txt", _readme(project, p))
    return kit_dir
