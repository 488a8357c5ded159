"""Watching a site's job process from its parent: what it runs, whether its code makes progress, how it ended.

The job process reports the task it runs (``task`` / ``task_done``) and, every few seconds, how long its
training code has been idle (``alive``). :class:`SiteJobWatch` turns that into one line when the process dies
(``job process on site-1 exited with code 1 during task 'train' (round 1)``) and ends a process whose task made
no progress for the limit (``site-1: the training script made no progress for 30 min``). A task that carries
an explicit time limit from its workflow is left to that limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flruntime.errors import UsageError
from flruntime.jobproc.process import JobProcess

log = logging.getLogger(__name__)

#: The default no-progress limit of a task (seconds): generous, since epochs of big models take long.
PROGRESS_TIMEOUT = 1800.0

#: Seconds a job process may stay silent (no ``alive`` message) before its silence counts as no progress.
SILENCE = 10.0


def progress_limit(meta: Mapping[str, Any], resources: Mapping[str, Any] | None = None) -> float:
    """The no-progress limit of a job's tasks on a site (seconds; 0: none).

    The job's ``meta.json`` ``progress_timeout`` wins over the site's (``local/resources.json``
    ``progress_timeout``); the default is :data:`PROGRESS_TIMEOUT`.

    Raises:
        UsageError: the value is not a number of seconds ≥ 0.
    """
    for where, source in (("meta.json", meta), ("local/resources.json", resources or {})):
        if "progress_timeout" not in source:
            continue
        value = source["progress_timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise UsageError(f"{where}: progress_timeout: {value!r} is not a number of seconds (0 turns the check off)")
        return float(value)
    return PROGRESS_TIMEOUT


def duration(seconds: float) -> str:
    """``1800`` → ``30 min``, ``7200`` → ``2 h``, ``45`` → ``45 s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


@dataclass
class _Task:
    name: str
    round: Any
    limited: bool
    started: float


class SiteJobWatch:
    """Follows one site's job process (pass :meth:`on_status` as the process's status callback).

    Args:
        site: the site's name.
        progress_timeout: seconds a task's code may make no progress (0: no limit).
    """

    def __init__(self, site: str, progress_timeout: float = PROGRESS_TIMEOUT) -> None:
        self.site = site
        self.progress_timeout = progress_timeout
        self.task: _Task | None = None
        self.idle = 0.0
        self.heard = time.monotonic()
        self.stuck = ""
        self._lock = threading.Lock()

    def on_status(self, message: dict[str, Any]) -> None:
        """Take one status message of the job process."""
        kind = message.get("kind")
        now = time.monotonic()
        with self._lock:
            self.heard = now
            if kind == "task":
                timeout = message.get("timeout")
                limited = isinstance(timeout, (int, float)) and timeout > 0
                self.task = _Task(str(message.get("name")), message.get("round"), limited, now)
                self.idle = 0.0
            elif kind == "task_done":
                self.task = None
                self.idle = 0.0
            elif kind == "alive":
                idle = message.get("idle")
                self.idle = float(idle) if isinstance(idle, (int, float)) else 0.0

    def idle_for(self) -> float:
        """Seconds the running task's code has made no progress (0 when no task runs or it has its own limit)."""
        with self._lock:
            if self.task is None or self.task.limited:
                return 0.0
            now = time.monotonic()
            silent = now - self.heard
            idle = self.idle + silent if silent > SILENCE else self.idle
            return min(idle, now - self.task.started)

    def where(self) -> str:
        """`` during task 'train' (round 1)`` while a task runs, else ``""``."""
        with self._lock:
            task = self.task
        if task is None:
            return ""
        return f" during task '{task.name}'" + (f" (round {task.round})" if task.round is not None else "")

    def watch(self, proc: JobProcess, stop: threading.Event, poll: float = 1.0) -> str:
        """Wait until ``proc`` ends or ``stop`` is set; return why the job failed on this site ("" when it did not).

        A task idle past the limit gets the process ended (and ``site-1: the training script made no progress
        for 30 min`` returned); a process that ends with a non-zero code or a signal returns
        ``job process on site-1 exited with code 1 during task 'train' (round 1)`` or the like. ``stop`` (an
        abort) ends the process and returns "".
        """
        while proc.poll() is None:
            if stop.wait(poll):
                proc.terminate()
                return ""
            if self.progress_timeout and self.idle_for() >= self.progress_timeout:
                self.stuck = f"{self.site}: the training script made no progress for {duration(self.progress_timeout)}"
                log.error("%s; ending its job process", self.stuck)
                proc.terminate()
                return self.stuck
        proc.terminate()  # the process ended: whatever it started goes with it
        if proc.returncode == 0:
            return ""
        return f"job process on {self.site} {proc.exit_cause()}{self.where()}"


def on_statuses(*handlers: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """One status callback that calls each of ``handlers``."""

    def call(message: dict[str, Any]) -> None:
        for handler in handlers:
            handler(message)

    return call


__all__ = ["PROGRESS_TIMEOUT", "SiteJobWatch", "duration", "on_statuses", "progress_limit"]
