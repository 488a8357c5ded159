"""One side of a pipe in use: a reader thread, heartbeats both ways, and how long the peer has been quiet.

Both the client engine's executor and the training script wrap their pipe in a :class:`PipeEndpoint`.
Every message from the peer, heartbeats included, counts as a sign of life; heartbeats are sent every
``heartbeat_interval`` seconds and never reach :meth:`PipeEndpoint.get`. Topics with a handler are handled
in the reader thread (e.g. acknowledgements a sender waits for); the rest queue up for :meth:`get`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping

from flruntime.pipes.base import thread_name
from flruntime.roles import Pipe
from flruntime.runtime import progress

log = logging.getLogger(__name__)

#: The topic of heartbeat messages.
HEARTBEAT = "_hb"

Handler = Callable[[bytes], None]


class PipeEndpoint:
    """A pipe plus the threads that read it and keep it alive.

    Args:
        pipe: an opened pipe.
        site: the site, to name the threads (``"<site>:pipe-reader"``).
        read_interval: seconds one read waits before the reader checks whether it should stop.
        heartbeat_interval: seconds between two heartbeats sent to the peer.
        handlers: topic → function called in the reader thread with the payload.
    """

    def __init__(
        self,
        pipe: Pipe,
        *,
        site: str = "",
        read_interval: float = 0.1,
        heartbeat_interval: float = 5.0,
        handlers: Mapping[str, Handler] | None = None,
    ) -> None:
        self.pipe = pipe
        self.site = site
        self.read_interval = max(float(read_interval), 0.001)
        self.heartbeat_interval = max(float(heartbeat_interval), 0.01)
        self.handlers = dict(handlers or {})
        self._queue: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._last_heard = time.monotonic()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start reading and sending heartbeats."""
        self._stop.clear()
        self._last_heard = time.monotonic()
        for target, what in ((self._read_loop, "pipe-reader"), (self._heartbeat_loop, "pipe-heartbeat")):
            t = threading.Thread(target=target, name=thread_name(self.site, what), daemon=True)
            self._threads.append(t)
            t.start()

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pipe.receive(self.read_interval)
            except Exception:
                log.exception("%s: reading the pipe failed", self.site or "pipe")
                self._stop.wait(self.read_interval)
                continue
            if message is None:
                continue
            self._last_heard = time.monotonic()
            progress.touch()
            topic, payload = message
            if topic == HEARTBEAT:
                continue
            handler = self.handlers.get(topic)
            if handler is None:
                self._queue.put(message)
                continue
            try:
                handler(payload)
            except Exception:
                log.exception("%s: handling a '%s' message failed", self.site or "pipe", topic)

    def _heartbeat_loop(self) -> None:
        while True:
            try:
                self.pipe.send(HEARTBEAT, b"", timeout=0.0)
            except Exception as exc:  # a pipe that fails to send must not end the heartbeats
                log.debug("%s: heartbeat not sent: %s", self.site or "pipe", exc)
            if self._stop.wait(self.heartbeat_interval):
                return

    def send(self, topic: str, payload: bytes | bytearray = b"", timeout: float | None = 0.0) -> bool:
        """Send a message to the peer; False when the pipe could not take it."""
        try:
            return self.pipe.send(topic, payload, timeout=timeout)
        except OSError as exc:
            log.warning("%s: sending '%s' failed: %s", self.site or "pipe", topic, exc)
            return False

    def get(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Return the next message (not a heartbeat) from the peer, or None after ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def silence(self) -> float:
        """Seconds since the peer was last heard from (or since :meth:`start` / :meth:`reset`)."""
        return time.monotonic() - self._last_heard

    @property
    def peer_closed(self) -> bool:
        """True when the pipe knows the peer has gone."""
        return self.pipe.peer_closed

    def reset(self) -> None:
        """Forget queued messages and restart the silence clock (a new peer is about to start)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._last_heard = time.monotonic()

    def close(self) -> None:
        """Stop the threads (the pipe itself stays open: its owner closes it)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=max(2.0, 2 * self.read_interval))
        self._threads = []
