"""Which Client API session a ``flare.*`` call talks to.

In a launched process there is one session for the whole process. In the simulator, several sites' scripts
run in threads of one process, so each script thread is bound to its own session, and threads a script
starts with ``threading.Thread.start`` inherit the binding of the thread that started them (flruntime
wraps ``Thread.start`` once to tag new threads; nothing else about threads changes).

Limits: threads started another way (``_thread.start_new_thread``, native threads of extension modules, or
pool threads created before the script ran and shared with other sites) are not bound. From such a thread a
``flare.*`` call still works when only one session is active in the process; otherwise it raises an error
that says to call the API from the script's own threads.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flruntime.client.base import ClientAPI

_ATTR = "_flruntime_client_api"
_local = threading.local()
_lock = threading.Lock()
_active: list[ClientAPI] = []
_process: list[ClientAPI] = []
_hooked = False


def _install_thread_hook() -> None:
    """Make ``Thread.start`` tag the new thread with the starting thread's session (once per process)."""
    global _hooked
    with _lock:
        if _hooked:
            return
        original = threading.Thread.start

        def start(self: threading.Thread) -> None:
            api = _bound()
            if api is not None and getattr(self, _ATTR, None) is None:
                setattr(self, _ATTR, api)
            original(self)

        start.__doc__ = original.__doc__
        setattr(threading.Thread, "start", start)  # noqa: B010 - assigning a method needs setattr for mypy
        _hooked = True


def _bound() -> ClientAPI | None:
    api: Any = getattr(_local, "api", None)
    if api is None:
        api = getattr(threading.current_thread(), _ATTR, None)
    return api


def bind_thread(api: ClientAPI) -> None:
    """Bind the current thread (and threads it starts from now on) to ``api``."""
    _install_thread_hook()
    _local.api = api
    with _lock:
        _active.append(api)


def unbind_thread(api: ClientAPI) -> None:
    """Undo :func:`bind_thread` (the session is no longer active)."""
    if getattr(_local, "api", None) is api:
        _local.api = None
    with _lock:
        if api in _active:
            _active.remove(api)


def set_process_api(api: ClientAPI | None) -> None:
    """Make ``api`` the session of every thread of this process that has no binding (a launched script)."""
    with _lock:
        _process[:] = [api] if api is not None else []


def current() -> ClientAPI | None:
    """The session of the calling thread: its binding, the process session, or the only active one."""
    api = _bound()
    if api is not None:
        return api
    with _lock:
        if _process:
            return _process[0]
        if len(_active) == 1:
            return _active[0]
        if len(_active) > 1:
            raise RuntimeError(
                "flare.* was called from a thread that belongs to no training script while several sites run "
                "in this process; call it from the script's thread or threads it starts with threading.Thread"
            )
    return None
