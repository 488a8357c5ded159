"""A pipe made of message files in a folder both sides can reach (NVFlare's ``FilePipe``).

Layout under ``root_path``: ``<channel>/to_active/`` and ``<channel>/to_passive/``. A sender writes each
message to a hidden temporary file and renames it into place, so a reader never sees half a message;
names start with the sender's clock in nanoseconds, so messages are read in the order they were sent.
The reader takes the oldest file and deletes it.
"""

from __future__ import annotations

import itertools
import logging
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any

from flruntime.pipes.base import Mode, parse_mode, peer_mode
from flruntime.roles import Pipe

log = logging.getLogger(__name__)

_MAGIC = b"FLP1"
_SUFFIX = ".msg"


def pack(topic: str, payload: bytes | bytearray) -> bytes:
    """Return the bytes of one message file."""
    raw = topic.encode("utf-8")
    return b"".join([_MAGIC, struct.pack(">H", len(raw)), raw, payload])


def unpack(data: bytes) -> tuple[str, bytes]:
    """Return ``(topic, payload)`` from the bytes of a message file.

    Raises:
        ValueError: when the bytes are not a message.
    """
    if len(data) < 6 or data[:4] != _MAGIC:
        raise ValueError("not a pipe message (bad magic)")
    (size,) = struct.unpack(">H", data[4:6])
    if len(data) < 6 + size:
        raise ValueError("truncated pipe message")
    return data[6 : 6 + size].decode("utf-8"), data[6 + size :]


class FilePipe(Pipe):
    """Exchanges messages as files under ``root_path`` (both sides must see the same folder).

    Args:
        mode: ``ACTIVE`` or ``PASSIVE`` (the executor side is usually PASSIVE, the script side ACTIVE).
        root_path: the folder (created when the pipe opens); NVFlare's templates use
            ``{WORKSPACE}/{JOB_ID}/{SITE_NAME}``.
        file_check_interval: seconds between two looks for a new message file.
    """

    def __init__(self, mode: str, root_path: str, file_check_interval: float = 0.1) -> None:
        if file_check_interval <= 0:
            raise ValueError(f"file_check_interval must be positive, got {file_check_interval}")
        self.mode = parse_mode(mode)
        self.root_path = root_path
        self.file_check_interval = float(file_check_interval)
        self._in: Path | None = None
        self._out: Path | None = None
        self._closed = threading.Event()
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def open(self, channel: str = "task") -> None:
        """Create ``<root_path>/<channel>/to_active`` and ``to_passive`` and start using them."""
        base = Path(self.root_path).expanduser().resolve() / channel
        to_active, to_passive = base / "to_active", base / "to_passive"
        for folder in (to_active, to_passive):
            folder.mkdir(parents=True, exist_ok=True)
        self._in, self._out = (to_active, to_passive) if self.mode is Mode.ACTIVE else (to_passive, to_active)
        self._closed.clear()

    def close(self) -> None:
        """Stop sending and receiving (message files stay for a peer that still reads them)."""
        self._closed.set()

    def send(self, topic: str, payload: bytes | bytearray = b"", timeout: float | None = None) -> bool:
        """Write one message file (atomically); False when the pipe is closed or the write failed."""
        out = self._out
        if out is None or self._closed.is_set():
            return False
        with self._lock:
            name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):08d}{_SUFFIX}"
        tmp = out / f".{name}.tmp"
        try:
            tmp.write_bytes(pack(topic, payload))
            os.replace(tmp, out / name)
        except OSError as exc:
            log.warning("file pipe: cannot write a '%s' message to %s: %s", topic, out, exc)
            tmp.unlink(missing_ok=True)
            return False
        return True

    def _take_oldest(self, folder: Path) -> tuple[str, bytes] | None:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(_SUFFIX) and not n.startswith("."))
        except FileNotFoundError:
            return None
        for name in names:
            path = folder / name
            try:
                data = path.read_bytes()
                path.unlink()
            except FileNotFoundError:
                continue
            try:
                return unpack(data)
            except ValueError as exc:
                log.warning("file pipe: skipping %s: %s", path, exc)
        return None

    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Return the oldest message from the peer, polling every ``file_check_interval`` up to ``timeout``."""
        folder = self._in
        if folder is None:
            return None
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            message = self._take_oldest(folder)
            if message is not None:
                return message
            wait = self.file_check_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                wait = min(wait, left)
            self._closed.wait(wait)
        return None

    def clear(self) -> None:
        """Delete the message files waiting in both directions."""
        for folder in (self._in, self._out):
            if folder is None or not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name.endswith((_SUFFIX, ".tmp")):
                    path.unlink(missing_ok=True)

    def export(self) -> dict[str, Any]:
        """The peer's side: the same folder, the other mode."""
        root = Path(self.root_path).expanduser().resolve()
        return {
            "CLASS_NAME": "FilePipe",
            "ARG": {
                "mode": str(peer_mode(self.mode)),
                "root_path": str(root),
                "file_check_interval": self.file_check_interval,
            },
        }
