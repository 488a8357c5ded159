"""Logins and sessions: one-time login tokens and the server-side sessions they open.

The admin command ``dashboard_login`` issues a token, ``/login?token=...`` redeems it. A token is 256 random bits,
bound to the admin who asked (name, org, role), valid for :data:`TOKEN_TTL` seconds and for one login only.

A login opens a session in :class:`Sessions`: a random id, which is all the (signed) cookie carries, bound to the
admin and valid for :data:`SESSION_TTL` seconds. Every request looks its id up, so ``/logout`` (which closes the
session) ends it for every copy of the cookie too. Only hashes of tokens and session ids are kept, in memory: a
server restart ends every pending link and every session.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds a login link stays valid.
TOKEN_TTL = 300.0
#: Seconds a dashboard session lasts (8 hours).
SESSION_TTL = 8 * 3600.0


@dataclass(frozen=True)
class Viewer:
    """The admin a dashboard session belongs to (from the admin's certificate, checked by the server)."""

    name: str
    org: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LoginTokens:
    """Pending one-time login tokens.

    Args:
        ttl: seconds each token is valid.
        clock: the time source (monotonic seconds).
    """

    def __init__(self, ttl: float = TOKEN_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._now = clock
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[Viewer, float]] = {}

    def issue(self, viewer: Viewer) -> str:
        """Return a new token for ``viewer``."""
        token = secrets.token_urlsafe(32)
        now = self._now()
        with self._lock:
            self._pending = {k: v for k, v in self._pending.items() if v[1] > now}
            self._pending[_digest(token)] = (viewer, now + self.ttl)
        return token

    def redeem(self, token: str) -> Viewer | None:
        """The viewer of a valid token, which is used up; None for an unknown, used or expired one."""
        with self._lock:
            entry = self._pending.pop(_digest(token), None)
        if entry is None or entry[1] <= self._now():
            return None
        return entry[0]


class Sessions:
    """The open dashboard sessions, by (a hash of) their random id.

    Args:
        ttl: seconds each session lasts.
        clock: the time source (monotonic seconds).
    """

    def __init__(self, ttl: float = SESSION_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._now = clock
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Viewer, float]] = {}

    def open(self, viewer: Viewer) -> str:
        """Open a session for ``viewer`` and return its id (for the cookie)."""
        sid = secrets.token_urlsafe(32)
        now = self._now()
        with self._lock:
            self._open = {k: v for k, v in self._open.items() if v[1] > now}
            self._open[_digest(sid)] = (viewer, now + self.ttl)
        return sid

    def get(self, sid: str) -> Viewer | None:
        """The viewer of a live session; None for an unknown, closed or expired one (which is forgotten)."""
        key = _digest(sid)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None and entry[1] <= self._now():
                del self._open[key]
                entry = None
        return None if entry is None else entry[0]

    def close(self, sid: str) -> None:
        """End a session (unknown ids are ignored)."""
        with self._lock:
            self._open.pop(_digest(sid), None)

    def __len__(self) -> int:
        """How many sessions are open (expired ones included until next pruned)."""
        with self._lock:
            return len(self._open)
