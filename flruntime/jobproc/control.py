"""The parent's side of talking to a job process: the job's spec, then commands, as JSON lines on its stdin.

The first line a job process reads is its spec (what to run, where, with which certificates); every later line
is a command (``{"cmd": "abort"}``, ``{"cmd": "gone", "site": ...}``, ...). The job process answers through its
status channel (:mod:`flruntime.jobproc.status`). Nothing but JSON crosses: no pickle.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import IO, Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], None]


def read_spec(stream: IO[str]) -> dict[str, Any]:
    """Read the job process's spec: the first line of ``stream``.

    Raises:
        ValueError: the line is not a JSON object.
    """
    spec = json.loads(stream.readline() or "null")
    if not isinstance(spec, dict):
        raise ValueError("a job process's first line of input must be its spec (a JSON object)")
    return spec


def follow(stream: IO[str], handlers: dict[str, Handler], on_end: Callable[[], None] | None = None) -> threading.Thread:
    """Read commands from ``stream`` in a thread and call ``handlers[cmd]`` with each; ``on_end`` at end of input.

    The parent closing the stream (or dying) ends the input: ``on_end`` decides what that means (a job process
    aborts its job: nobody would see its results).
    """

    def loop() -> None:
        for line in stream:
            try:
                message = json.loads(line)
                handler = handlers.get(str(message.get("cmd")))
            except (ValueError, AttributeError):
                log.warning("ignoring a malformed command from the parent: %.200s", line)
                continue
            if handler is None:
                log.warning("ignoring an unknown command from the parent: %.200s", line)
                continue
            try:
                handler(message)
            except Exception:
                log.exception("command %s failed", message.get("cmd"))
        if on_end is not None:
            on_end()

    thread = threading.Thread(target=loop, name="jobproc:commands", daemon=True)
    thread.start()
    return thread


class Commander:
    """Writes the spec and commands to a job process's stdin (thread-safe; a dead process is not an error)."""

    def __init__(self, stdin: IO[str] | None) -> None:
        self.stdin = stdin
        self._lock = threading.Lock()

    def send(self, cmd: str, **fields: Any) -> bool:
        """Send one command; False when the job process is gone."""
        return self.write({"cmd": cmd, **fields})

    def write(self, message: dict[str, Any]) -> bool:
        """Write one JSON line; False when the job process is gone."""
        if self.stdin is None:
            return False
        with self._lock:
            try:
                self.stdin.write(json.dumps(message) + "\n")
                self.stdin.flush()
                return True
            except (OSError, ValueError):  # closed pipe / closed file
                return False

    def close(self) -> None:
        """Close the job process's input (it then ends its job)."""
        with self._lock:
            if self.stdin is not None:
                try:
                    self.stdin.close()
                except OSError:
                    pass
                self.stdin = None


__all__ = ["Commander", "follow", "read_spec"]
