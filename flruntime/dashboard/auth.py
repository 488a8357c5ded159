"""One-time login tokens: the admin command ``dashboard_login`` issues one, ``/login?token=...`` redeems it.

A token is 256 random bits, bound to the admin who asked (name, org, role), valid for :data:`TOKEN_TTL` seconds and
for one login only. Only a hash of it is kept, in memory: a server restart ends every pending link (and, since the
session cookies are signed with a key made at start, every session).
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
