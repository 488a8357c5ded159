"""The server's web dashboard: sites, jobs, training curves, the cross-site matrix and logs, in a browser.

Opt-in: ``flruntime site start`` of a server serves it when ``FLRUNTIME_DASHBOARD_PORT`` is set (``0``: a free
port), on ``FLRUNTIME_DASHBOARD_HOST`` (default ``127.0.0.1``), in a thread of the server process. Every request
needs a session: an admin gets a one-time login link with ``flruntime admin -c dashboard_login`` (the admin command
``dashboard_login``), which binds the session to that admin's name, org and role. The pages are read-only, except
Abort and Clone, which the admin's role must allow (:func:`flruntime.federation.policy.allowed`) and which are
written to the server's audit log like the console's commands.

This module imports nothing heavy: Flask and plotly are loaded by :func:`start_dashboard` (the ``dashboard``
extra: ``pip install 'flruntime[dashboard]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flruntime.errors import UsageError

if TYPE_CHECKING:
    from flruntime.dashboard.host import DashboardHost
    from flruntime.dashboard.service import Dashboard

#: The dashboard's port (``0``: a free one); unset: no dashboard.
ENV_DASHBOARD_PORT = "FLRUNTIME_DASHBOARD_PORT"
#: The address it binds to (default ``127.0.0.1``: only this machine).
ENV_DASHBOARD_HOST = "FLRUNTIME_DASHBOARD_HOST"
DEFAULT_HOST = "127.0.0.1"


def start_dashboard(server: DashboardHost, port: int | str, host: str = DEFAULT_HOST) -> Dashboard:
    """Serve the dashboard of ``server`` in a thread and return it (``.url``, ``.login_url(admin)``, ``.stop()``).

    Raises:
        UsageError: a bad port, a port in use, or Flask / plotly not installed.
    """
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise UsageError(f"{ENV_DASHBOARD_PORT}={port!r}: not a port number (0 picks a free port)") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"{ENV_DASHBOARD_PORT}={port!r}: a port is 0 to 65535 (0 picks a free port)")
    try:
        from flruntime.dashboard.service import Dashboard
    except ImportError as exc:
        raise UsageError(f"the dashboard needs Flask and plotly ({exc}): pip install 'flruntime[dashboard]'") from exc
    return Dashboard.start(server, number, host or DEFAULT_HOST)


__all__ = ["DEFAULT_HOST", "ENV_DASHBOARD_HOST", "ENV_DASHBOARD_PORT", "start_dashboard"]
