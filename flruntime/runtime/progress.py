"""Signs that a job's training code is making progress, for the watchdog of its job process.

The Client API (a script receiving a task or sending a result), every metric a site emits, and every message a
launched script sends over its pipe (heartbeats included) call :func:`touch`. A job process reports
:func:`since` to its parent, which fails a task whose code made no progress for the site's limit
(:mod:`flruntime.jobproc.watch`). A plain float under the GIL: touching costs a clock read.
"""

from __future__ import annotations

import time

_last = time.monotonic()


def touch() -> None:
    """Note that the training code did something (a Client API call, a metric, a pipe message)."""
    global _last
    _last = time.monotonic()


def last() -> float:
    """When :func:`touch` was last called (``time.monotonic()`` seconds; process start at first)."""
    return _last


__all__ = ["last", "touch"]
