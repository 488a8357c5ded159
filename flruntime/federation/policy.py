"""Who may run which admin command (NVFlare's default policy), and the audit log of every command.

Roles (the ``role`` of an admin in project.yml, carried in the admin's certificate):

* ``project_admin``: everything.
* ``org_admin`` and ``lead``: submit jobs; manage (abort, clone, resume, delete, download) the jobs submitted by an
  admin of their own organisation; shut down or restart the clients of their organisation; view everything.
* ``member``: view only (list jobs, status, sites, errors, stats, logs, the dashboard).
"""

from __future__ import annotations

import json
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Any

AUDIT_FILE = "audit.log"


class Right(StrEnum):
    """What a command needs."""

    VIEW = "view"
    SUBMIT = "submit"
    MANAGE = "manage"  # a job: the submitter's organisation
    OPERATE = "operate"  # clients: their organisation


#: Every admin command and the right it needs.
COMMANDS: dict[str, Right] = {
    "submit_job": Right.SUBMIT,
    "list_jobs": Right.VIEW,
    "abort_job": Right.MANAGE,
    "clone_job": Right.MANAGE,
    "resume_job": Right.MANAGE,
    "delete_job": Right.MANAGE,
    "download_job": Right.MANAGE,
    "check_status": Right.VIEW,
    "list_sites": Right.VIEW,
    "show_errors": Right.VIEW,
    "show_stats": Right.VIEW,
    "job_logs": Right.VIEW,
    "dashboard_login": Right.VIEW,  # a one-time link into the web dashboard (flruntime.dashboard)
    "shutdown": Right.OPERATE,
    "restart": Right.OPERATE,
}

ROLES = ("project_admin", "org_admin", "lead", "member")


def allowed(role: str, org: str, command: str, owner_org: str | None = None) -> str:
    """Return why ``role`` of ``org`` may not run ``command`` on something of ``owner_org`` ("" when it may).

    Args:
        role: the admin's role.
        org: the admin's organisation.
        command: the command (a key of :data:`COMMANDS`).
        owner_org: the organisation of the job's submitter (MANAGE) or of the client (OPERATE).
    """
    right = COMMANDS.get(command)
    if right is None:
        return f"unknown command '{command}'"
    if role == "project_admin":
        return ""
    if role not in ROLES:
        return f"unknown role '{role}'"
    if right == Right.VIEW:
        return ""
    if role == "member":
        return f"role member may only view; {command} needs {right}"
    if right == Right.SUBMIT:
        return ""
    if owner_org is not None and owner_org != org:
        what = "jobs" if right == Right.MANAGE else "clients"
        return f"role {role} may {command} only for {what} of org '{org}', not of org '{owner_org}'"
    return ""


class AuditLog:
    """Appends one JSON line per admin command: when, who (name, org, role), what, and how it ended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(
        self, user: str, org: str, role: str, command: str, args: dict[str, Any], result: str, detail: str = ""
    ) -> None:
        """Record one command (``result``: ``ok``, ``refused`` or ``failed``)."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "user": user,
            "org": org,
            "role": role,
            "command": command,
            "args": args,
            "result": result,
        }
        if detail:
            entry["detail"] = detail
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        """Every entry so far."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
