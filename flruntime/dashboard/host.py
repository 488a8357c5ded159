"""What the dashboard needs of the server that serves it: :class:`DashboardHost`, a structural type.

The dashboard types against this Protocol, not against :class:`~flruntime.federation.server.FederationServer`, so
that nothing in :mod:`flruntime.dashboard` imports the server module (which imports the dashboard to start it).
The federation server satisfies it as it is; tests may pass any object with these members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from flruntime.federation.jobs import JobStore
from flruntime.federation.kit import Kit, Member
from flruntime.federation.policy import AuditLog


class DashboardCommands(Protocol):
    """The server's admin commands, as the dashboard runs them (for the session's admin)."""

    def run(self, who: Member, request: bytes) -> bytes:
        """Run one command from a JSON request ``{"command": name, "args": {...}}``; a JSON reply."""
        ...

    def download(self, who: Member, args: dict[str, Any]) -> tuple[bytes, str]:
        """Zip a job's run folder; (bytes, "") or (b"", why not)."""
        ...


class DashboardHost(Protocol):
    """The server as the dashboard sees it: its kit, job store, workspace, admin commands, audit log and state."""

    # read-only (properties): a plain attribute of the server, of these types or narrower, satisfies each

    @property
    def kit(self) -> Kit:
        """The server's startup kit (project, name, host, members)."""
        ...

    @property
    def store(self) -> JobStore:
        """The job store."""
        ...

    @property
    def workspace(self) -> Path:
        """Where the jobs' run folders are."""
        ...

    @property
    def commands(self) -> DashboardCommands:
        """The admin commands."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The server's view of its sites (``{"sites": {name: {...}}, ...}``) and its uptime (``uptime_s``)."""
        ...


__all__ = ["DashboardCommands", "DashboardHost"]
