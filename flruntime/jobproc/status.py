"""The job process's side of its status channel: JSON lines on a pipe its parent gave it.

The parent names the pipe's write end in ``FLRUNTIME_STATUS_FD``; the job process writes one JSON object per
line (``{"kind": "task", ...}``). A parent that went away is not an error: the writer just stops writing.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from typing import Any

#: The environment variable that names the status pipe's file descriptor.
ENV_STATUS_FD = "FLRUNTIME_STATUS_FD"


class StatusWriter:
    """Writes status messages to the parent, one JSON line each (thread-safe; never raises)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._broken = False

    @classmethod
    def from_env(cls) -> StatusWriter | None:
        """The writer of the pipe the parent named, or None when there is none.

        The variable is removed from the environment and the descriptor made non-inheritable, so that what the
        job starts neither inherits the pipe (which would keep it open after the job process ended) nor takes an
        unrelated descriptor of the same number for it.
        """
        raw = os.environ.pop(ENV_STATUS_FD, "")
        try:
            fd = int(raw)
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return None
            os.set_inheritable(fd, False)
        except (ValueError, OSError):
            return None
        return cls(fd)

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message ``{"kind": kind, **fields}`` (values JSON cannot hold are sent as strings).

        Dropped, as is every later one, when the parent is gone.
        """
        data = (json.dumps({"kind": kind, **fields}, default=str) + "\n").encode()
        with self._lock:
            while data and not self._broken:
                try:
                    data = data[os.write(self._fd, data) :]
                except InterruptedError:
                    continue
                except OSError:  # EPIPE once the parent closed its end (Python ignores SIGPIPE)
                    self._broken = True

    def close(self) -> None:
        """Close the pipe (later messages are dropped)."""
        with self._lock:
            if not self._broken:
                self._broken = True
                try:
                    os.close(self._fd)
                except OSError:
                    pass


__all__ = ["ENV_STATUS_FD", "StatusWriter"]
