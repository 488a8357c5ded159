"""A pipe between two components of the same process (NVFlare's ``MemoryPipe``).

Both sides name the same ``token``; the ACTIVE side's messages reach the PASSIVE side and back through two
queues. Links are also keyed by the site (known once the engine calls ``setup``), so the sites of a
simulator, which share the job id NVFlare's configs use as token, stay apart.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flruntime.pipes.base import Mode, parse_mode
from flruntime.roles import Pipe

if TYPE_CHECKING:
    from flruntime.runtime.context import RunContext

Message = tuple[str, bytes]


@dataclass
class _Link:
    to_active: queue.Queue[Message] = field(default_factory=queue.Queue)
    to_passive: queue.Queue[Message] = field(default_factory=queue.Queue)
    users: int = 0


_LINKS: dict[tuple[str, str, str], _Link] = {}
_LOCK = threading.Lock()


class MemoryPipe(Pipe):
    """Exchanges messages through in-process queues shared by every pipe with the same site and token.

    Args:
        token: the name both sides use (NVFlare's configs pass ``{JOB_ID}``).
        mode: ``ACTIVE`` or ``PASSIVE``.
    """

    def __init__(self, token: str, mode: str = "ACTIVE") -> None:
        self.token = str(token)
        self.mode = parse_mode(mode)
        self.site = ""
        self._key: tuple[str, str, str] | None = None
        self._link: _Link | None = None

    def setup(self, ctx: RunContext) -> None:
        """Key the link by this site too."""
        self.site = ctx.site

    def open(self, channel: str = "task") -> None:
        """Join the link of (site, token, channel), creating it if the peer has not opened yet."""
        if self._link is not None:
            return
        key = (self.site, self.token, channel)
        with _LOCK:
            link = _LINKS.setdefault(key, _Link())
            link.users += 1
        self._key, self._link = key, link

    def close(self) -> None:
        """Leave the link; the last side to leave removes it."""
        if self._link is None or self._key is None:
            return
        with _LOCK:
            self._link.users -= 1
            if self._link.users <= 0:
                _LINKS.pop(self._key, None)
        self._link = self._key = None

    def send(self, topic: str, payload: bytes | bytearray = b"", timeout: float | None = None) -> bool:
        """Queue one message for the peer; False when the pipe is not open."""
        link = self._link
        if link is None:
            return False
        (link.to_passive if self.mode is Mode.ACTIVE else link.to_active).put((topic, bytes(payload)))
        return True

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Return the next message from the peer, or None after ``timeout`` seconds."""
        link = self._link
        if link is None:
            return None
        inbox = link.to_active if self.mode is Mode.ACTIVE else link.to_passive
        try:
            return inbox.get(timeout=timeout)
        except queue.Empty:
            return None

    def clear(self) -> None:
        """Drop the messages waiting in both directions."""
        link = self._link
        if link is None:
            return
        for q in (link.to_active, link.to_passive):
            while True:
                try:
                    q.get_nowait()
                except queue.Empty:
                    break
