"""The job process's side of its status channel: JSON lines on a pipe its parent gave it.

The parent names the pipe's write end in ``FLRUNTIME_STATUS_FD``; the job process writes one JSON object per
line (``{"kind": "task", ...}``). A parent that went away is not an error: the writer just stops writing.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

#: The environment variable that names the status pipe's file descriptor.
ENV_STATUS_FD = "FLRUNTIME_STATUS_FD"


class StatusWriter:
    """Writes status messages to the parent (thread-safe)."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._broken = False

    @classmethod
    def from_env(cls) -> StatusWriter | None:
        """The writer of the pipe the parent named, or None when there is none."""
        raw = os.environ.get(ENV_STATUS_FD, "")
        try:
            return cls(int(raw)) if raw else None
        except (ValueError, OSError):
            return None

    def send(self, kind: str, **fields: Any) -> None:
        """Send one message (dropped when the parent is gone)."""
        line = json.dumps({"kind": kind, **fields}, default=str) + "\n"
        with self._lock:
            if self._broken:
                return
            try:
                self._file.write(line)
                self._file.flush()
            except (OSError, ValueError):
                self._broken = True


__all__ = ["ENV_STATUS_FD", "StatusWriter"]
