"""Serving the dashboard from the server process: a threaded WSGI server (Werkzeug's) in a daemon thread."""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from flruntime.dashboard.app import LOGIN_HINT, create_app
from flruntime.dashboard.auth import LoginTokens, Sessions, Viewer
from flruntime.errors import UsageError
from flruntime.federation.kit import Member

if TYPE_CHECKING:
    from flruntime.dashboard.host import DashboardHost

log = logging.getLogger(__name__)

#: Addresses that mean "every interface": login links then name the server's host instead.
WILDCARDS = ("0.0.0.0", "::", "")


class _QuietHandler(WSGIRequestHandler):
    """No access log: the pages poll every 2 s and would flood the server's log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:  # noqa: D102
        pass


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class Dashboard:
    """A running dashboard (use :meth:`start`)."""

    def __init__(
        self, server: DashboardHost, httpd: BaseWSGIServer, host: str, tokens: LoginTokens, sessions: Sessions
    ) -> None:
        self.server = server
        self.host = host
        self.port = int(httpd.port)
        self.tokens = tokens
        self.sessions = sessions
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="server:dashboard", daemon=True)

    @classmethod
    def start(cls, server: DashboardHost, port: int, host: str) -> Dashboard:
        """Bind ``host:port`` (0: a free port) and serve in a thread.

        Raises:
            UsageError: the address cannot be bound.
        """
        tokens, sessions = LoginTokens(), Sessions()
        app = create_app(server, tokens, sessions)
        # bound here, not by Werkzeug, which prints and exits when it cannot bind
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            httpd = make_server(host, port, app, threaded=True, request_handler=_QuietHandler, fd=sock.fileno())
        except OSError as exc:
            raise UsageError(
                f"cannot serve the dashboard on {_url_host(host)}:{port}: {exc.strerror or exc} "
                "(choose another FLRUNTIME_DASHBOARD_PORT, or 0 for a free one)"
            ) from None
        finally:
            sock.close()  # the server holds its own duplicate
        dashboard = cls(server, httpd, host, tokens, sessions)
        # cookies are per host, not per port: one name per dashboard keeps two servers' sessions apart
        app.config["SESSION_COOKIE_NAME"] = f"flruntime_dashboard_{dashboard.port}"
        dashboard._thread.start()
        log.info("dashboard at %s (log in with `%s`)", dashboard.url, LOGIN_HINT)
        return dashboard

    @property
    def url(self) -> str:
        """The dashboard's address (with the server's host name when it binds every interface)."""
        host = self.server.kit.host if self.host in WILDCARDS else self.host
        return f"http://{_url_host(host)}:{self.port}"

    def login_url(self, admin: Member) -> str:
        """A one-time login link for ``admin`` (valid for the tokens' TTL)."""
        token = self.tokens.issue(Viewer(admin.name, admin.org, admin.role))
        return f"{self.url}/login?token={quote(token)}"

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._thread.join(timeout=10)
        self._httpd.server_close()
