"""Which site a log record belongs to, when several sites share one process (the simulator).

Engines and the communicator mark the code they run with :func:`as_site`; threads started by
components are attributed by their name prefix (``"site-1:script"``). The simulator uses
:func:`site_of` to send each record to its site's log file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


@contextmanager
def as_site(site: str) -> Iterator[None]:
    """Attribute log records of the current thread to ``site`` while the block runs."""
    previous = getattr(_local, "site", None)
    _local.site = site
    try:
        yield
    finally:
        _local.site = previous


def site_of(thread_name: str) -> str:
    """Return the site the current thread works for (set by :func:`as_site`, else the thread name's prefix)."""
    site = getattr(_local, "site", None)
    if site:
        return str(site)
    if thread_name == "MainThread":
        return "server"
    return thread_name.split(":")[0]
