"""A pipe over one TCP connection on the loopback interface (``SocketPipe``).

The PASSIVE side listens (by default on 127.0.0.1 with a port the system picks) and exports host, port
and a random secret; the ACTIVE side connects and proves it knows the secret and the channel before any
message flows. A frame is ``b"FLS1" | topic length (2 bytes) | payload length (8 bytes) | topic | payload``.
A PASSIVE side accepts a new connection at any time (a restarted script) and drops the old one.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import secrets
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from flruntime.pipes.base import Mode, parse_mode, peer_mode, thread_name
from flruntime.roles import Pipe

if TYPE_CHECKING:
    from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)

_HEAD = struct.Struct(">4sHQ")
_MAGIC = b"FLS1"
_AUTH, _OK = "_auth", "_ok"
#: The largest payload accepted in one frame (a sanity bound, far above any model).
MAX_PAYLOAD = 1 << 40
_SMALL = 1 << 16


def _read_exact(sock: socket.socket, size: int) -> bytearray | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            return None
        got += n
    return buf


def read_frame(sock: socket.socket) -> tuple[str, bytes] | None:
    """Read one frame; None at the end of the stream.

    Raises:
        ConnectionError: for bytes that are not a frame.
    """
    head = _read_exact(sock, _HEAD.size)
    if head is None:
        return None
    magic, topic_len, payload_len = _HEAD.unpack(head)
    if magic != _MAGIC or payload_len > MAX_PAYLOAD:
        raise ConnectionError("not a flruntime socket pipe frame")
    topic = _read_exact(sock, topic_len) if topic_len else bytearray()
    payload = _read_exact(sock, payload_len) if payload_len else bytearray()
    if topic is None or payload is None:
        return None
    return topic.decode("utf-8"), bytes(payload)


def write_frame(sock: socket.socket, topic: str, payload: bytes | bytearray) -> None:
    """Write one frame (raises OSError when the connection is gone)."""
    raw = topic.encode("utf-8")
    head = _HEAD.pack(_MAGIC, len(raw), len(payload)) + raw
    if len(payload) <= _SMALL:
        sock.sendall(head + payload)
    else:  # no copy of a large payload
        sock.sendall(head)
        sock.sendall(payload)


class SocketPipe(Pipe):
    """Exchanges messages over a TCP connection on 127.0.0.1.

    Args:
        mode: ``PASSIVE`` listens (the executor side), ``ACTIVE`` connects (the script side).
        host: the address to listen on or connect to (keep the loopback address: nothing is encrypted).
        port: the port; 0 on the PASSIVE side lets the system pick one (see :meth:`export`).
        secret: the shared secret the ACTIVE side must present (PASSIVE: "" makes a random one).
        connect_timeout: seconds the ACTIVE side keeps trying to connect.
    """

    def __init__(
        self,
        mode: str = "PASSIVE",
        host: str = "127.0.0.1",
        port: int = 0,
        secret: str = "",
        connect_timeout: float = 60.0,
    ) -> None:
        self.mode = parse_mode(mode)
        if self.mode is Mode.ACTIVE and not port:
            raise ValueError("an ACTIVE socket pipe needs the port the PASSIVE side listens on")
        self.host = host
        self.port = int(port)
        self.secret = secret
        self.connect_timeout = float(connect_timeout)
        self.site = ""
        self._channel = "task"
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._peer_closed = False
        self._closed = False
        self._threads: list[threading.Thread] = []

    def setup(self, ctx: RunContext) -> None:
        """Remember the site (to name this pipe's threads after it)."""
        self.site = ctx.site

    # --- opening ------------------------------------------------------------------------------------

    def open(self, channel: str = "task") -> None:
        """PASSIVE: start listening; ACTIVE: connect and authenticate (raises ConnectionError on failure)."""
        self._channel = channel
        self._closed = False
        if self.mode is Mode.PASSIVE:
            if not self.secret:
                self.secret = secrets.token_hex(16)
            listener = socket.create_server((self.host, self.port))
            listener.settimeout(0.25)
            self._listener = listener
            self.port = listener.getsockname()[1]
            self._start(self._accept_loop, "pipe-accept")
        else:
            self._attach(self._connect())

    def _start(self, target: Any, what: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=thread_name(self.site, what), daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()]
        self._threads.append(t)
        t.start()

    def _connect(self) -> socket.socket:
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=max(0.1, deadline - time.monotonic()))
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
                time.sleep(0.1)
        try:
            write_frame(sock, _AUTH, json.dumps({"secret": self.secret, "channel": self._channel}).encode())
            reply = read_frame(sock)
        except OSError as exc:
            sock.close()
            raise ConnectionError(f"{self.host}:{self.port} closed the connection: {exc}") from exc
        if reply is None or reply[0] != _OK:
            sock.close()
            raise ConnectionError(f"{self.host}:{self.port} refused the connection (wrong secret or channel)")
        sock.settimeout(None)
        return sock

    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._closed and listener is not None:
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                sock.settimeout(10.0)
                frame = read_frame(sock)
                if frame is None or frame[0] != _AUTH:
                    raise ConnectionError("no authentication frame")
                hello = json.loads(frame[1])
                if not hmac.compare_digest(str(hello.get("secret", "")), self.secret):
                    raise ConnectionError("wrong secret")
                if hello.get("channel") != self._channel:
                    raise ConnectionError(f"channel '{hello.get('channel')}' instead of '{self._channel}'")
                write_frame(sock, _OK, b"")
                sock.settimeout(None)
            except (OSError, ValueError) as exc:
                log.warning("socket pipe %s:%s: refused a connection: %s", self.host, self.port, exc)
                sock.close()
                continue
            self._attach(sock)

    def _attach(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small messages go out at once
        with self._cond:
            old, self._conn = self._conn, sock
            self._peer_closed = False
            self._cond.notify_all()
        if old is not None:
            _shut(old)
        self._start(self._read_loop, "pipe-read", sock)

    def _read_loop(self, sock: socket.socket) -> None:
        try:
            while True:
                frame = read_frame(sock)
                if frame is None:
                    break
                self._inbox.put(frame)
        except (OSError, ValueError) as exc:
            if not self._closed:
                log.debug("socket pipe %s:%s: connection lost: %s", self.host, self.port, exc)
        finally:
            with self._cond:
                if self._conn is sock:
                    self._conn = None
                    self._peer_closed = True
                    self._cond.notify_all()
            sock.close()

    # --- messages -----------------------------------------------------------------------------------

    def send(self, topic: str, payload: bytes | bytearray = b"", timeout: float | None = 0.0) -> bool:
        """Send one frame; False when there is no connection.

        A PASSIVE side waits up to ``timeout`` seconds for a peer to connect (None: until one does or the pipe
        closes); an ACTIVE side never waits: once its connection is gone, nobody will connect to it again.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._conn is None and not self._closed and self.mode is Mode.PASSIVE:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.5 if left is None else min(left, 0.5))
            sock = self._conn
        if sock is None:
            return False
        try:
            with self._send_lock:
                write_frame(sock, topic, payload)
        except OSError as exc:
            log.debug("socket pipe %s:%s: send failed: %s", self.host, self.port, exc)
            _shut(sock)
            return False
        return True

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Return the next message from the peer, or None after ``timeout`` seconds (or when closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            try:
                return self._inbox.get(timeout=max(left, 0.0))
            except queue.Empty:
                if self._closed or (deadline is not None and time.monotonic() >= deadline):
                    return None

    def clear(self) -> None:
        """Drop messages received but not read yet."""
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                return

    @property
    def peer_closed(self) -> bool:
        """True once the connection to the peer was lost (until a new peer connects)."""
        return self._peer_closed

    def close(self) -> None:
        """Close the listener and the connection; the pipe's threads end."""
        self._closed = True
        with self._cond:
            conn, self._conn = self._conn, None
            self._cond.notify_all()
        if self._listener is not None:
            _shut(self._listener)  # wakes a blocked accept() on Linux; the accept timeout covers the rest
            self._listener.close()
            self._listener = None
        if conn is not None:
            _shut(conn)
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2.0)
        self._threads = []

    def export(self) -> dict[str, Any]:
        """The peer's side: connect to this pipe's host and port with its secret (PASSIVE, after open)."""
        if self.mode is Mode.PASSIVE and self._listener is None:
            raise RuntimeError("open a PASSIVE socket pipe before exporting it (its port is not known yet)")
        return {
            "CLASS_NAME": "SocketPipe",
            "ARG": {
                "mode": str(peer_mode(self.mode)),
                "host": self.host,
                "port": self.port,
                "secret": self.secret,
                "connect_timeout": self.connect_timeout,
            },
        }


def _shut(sock: socket.socket) -> None:
    """Wake a reader blocked on ``sock`` (its reader thread closes it)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
