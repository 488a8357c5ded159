"""NVFlare's ``FLContext`` and the engine and workspace it hands out (``nvflare.apis.fl_context``).

flruntime's engines pass typed contexts (:class:`~flruntime.runtime.context.RunContext`); components written
for NVFlare get an :class:`FLContext` made from one by :mod:`flruntime.compat.adapters`. Its properties carry
the identity, the job id, the app root and the engine; properties set ``sticky`` stay for later contexts of
the same site and job, ``private`` ones are not shown to peers.

The workspace maps NVFlare's folders onto flruntime's: the run folder and the app folder are both the site's
folder for the job (where flruntime's persistors write, so a locator written for NVFlare finds the server's
model), with ``config/`` and ``custom/`` of the app linked into it on first use.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flruntime.compat.constants import FLContextKey, ReservedKey

if TYPE_CHECKING:
    from flruntime.compat.component import Signal
    from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)


@dataclass
class _Prop:
    value: Any
    private: bool
    sticky: bool


@dataclass
class SiteState:
    """What the NVFlare view of one site's run keeps between contexts: sticky properties, the panic reason.

    Attributes:
        run: the run.
        sticky: sticky properties by key.
        panic: the first ``system_panic`` reason ("" while none).
        task_panic: the ``task_panic`` reason of the task running now ("" while none).
        engine: the site's engine view (:class:`flruntime.compat.engine.Engine`), made on first use.
    """

    run: RunContext
    sticky: dict[str, _Prop] = field(default_factory=dict)
    panic: str = ""
    task_panic: str = ""
    engine: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_states: dict[int, SiteState] = {}
_states_lock = threading.Lock()


def site_state(run: RunContext) -> SiteState:
    """The NVFlare view of ``run`` (one per run context, made on first use)."""
    with _states_lock:
        state = _states.get(id(run))
        if state is None or state.run is not run:
            state = SiteState(run)
            _states[id(run)] = state
            _link_app(run)
        return state


def forget_site(run: RunContext) -> None:
    """Drop the NVFlare view of ``run`` (at the end of the run)."""
    with _states_lock:
        _states.pop(id(run), None)


def _link_app(run: RunContext) -> None:
    """Link the app's ``config/`` and ``custom/`` into the site's job folder (NVFlare's app root holds them)."""
    try:
        run.workspace.mkdir(parents=True, exist_ok=True)
        for name in ("config", "custom"):
            source, link = run.app_dir / name, run.workspace / name
            if source.is_dir() and not link.exists() and not link.is_symlink() and source.resolve() != link.resolve():
                link.symlink_to(source.resolve(), target_is_directory=True)
    except OSError as exc:  # a read-only workspace: components that need the links say so themselves
        log.debug("%s: cannot link the app into %s: %s", run.site, run.workspace, exc)


class Workspace:
    """NVFlare's workspace view of one site's run (``engine.get_workspace()``)."""

    def __init__(self, run: RunContext) -> None:
        self._run = run

    def get_root_dir(self) -> str:
        """The folder that holds the site's job folders."""
        return str(self._run.workspace.parent)

    def get_run_dir(self, job_id: str | None = None) -> str:  # noqa: ARG002 - one job per view
        """The site's folder for the job."""
        return str(self._run.workspace)

    def get_app_dir(self, job_id: str | None = None) -> str:  # noqa: ARG002 - one job per view
        """The app root: the site's folder for the job (with ``config/`` and ``custom/`` linked in)."""
        return str(self._run.workspace)

    def get_app_config_dir(self, job_id: str | None = None) -> str:  # noqa: ARG002
        """The app's ``config/`` folder."""
        return str(self._run.app_dir / "config")

    def get_app_custom_dir(self, job_id: str | None = None) -> str:  # noqa: ARG002
        """The app's ``custom/`` folder."""
        return str(self._run.app_dir / "custom")

    def get_result_root(self, job_id: str | None = None) -> str:  # noqa: ARG002
        """Where results go: the site's folder for the job."""
        return str(self._run.workspace)

    def get_log_root(self, job_id: str | None = None) -> str:  # noqa: ARG002
        """Where logs go: the site's folder for the job."""
        return str(self._run.workspace)

    def get_site_config_dir(self) -> str:
        """The site's ``local/`` folder (next to its job folders)."""
        return str(self._run.workspace.parent / "local")

    def get_startup_kit_dir(self) -> str:
        """The site's ``startup/`` folder (next to its job folders)."""
        return str(self._run.workspace.parent / "startup")

    def get_file_path_in_site_config(self, file_basename: str) -> str | None:
        """``local/<file_basename>`` when it exists, else None."""
        path = Path(self.get_site_config_dir()) / file_basename
        return str(path) if path.exists() else None


class FLContext:
    """Properties of one moment of a run, as NVFlare's components read and write them.

    Args:
        state: the site's NVFlare view; None for a free-standing context (tests, ``fobs`` round trips).
    """

    def __init__(self, state: SiteState | None = None) -> None:
        self._state = state
        self._props: dict[str, _Prop] = {}
        if state is not None:
            with state.lock:
                self._props.update({k: _Prop(p.value, p.private, True) for k, p in state.sticky.items()})

    # --- properties -------------------------------------------------------------------------------------

    def set_prop(self, key: str, value: Any, private: bool = True, sticky: bool = True) -> bool:
        """Set property ``key``; a sticky one stays for later contexts of this site's run. Always True."""
        self._props[key] = _Prop(value, private, sticky)
        if sticky and self._state is not None:
            with self._state.lock:
                self._state.sticky[key] = _Prop(value, private, True)
        return True

    def get_prop(self, key: str, default: Any = None) -> Any:
        """Property ``key``, else ``default``."""
        prop = self._props.get(key)
        return default if prop is None else prop.value

    def get_prop_detail(self, key: str) -> dict[str, Any] | None:
        """``{"value", "private", "sticky"}`` of property ``key``, or None."""
        prop = self._props.get(key)
        return None if prop is None else {"value": prop.value, "private": prop.private, "sticky": prop.sticky}

    def remove_prop(self, key: str) -> None:
        """Drop property ``key`` (from the sticky ones too)."""
        self._props.pop(key, None)
        if self._state is not None:
            with self._state.lock:
                self._state.sticky.pop(key, None)

    def get_all_public_props(self) -> dict[str, Any]:
        """Every property that is not private, by key."""
        return {k: p.value for k, p in self._props.items() if not p.private}

    def sync_sticky(self) -> None:
        """Make this context's sticky properties the site's (set_prop already writes them through)."""
        if self._state is not None:
            with self._state.lock:
                sticky = {k: _Prop(p.value, p.private, True) for k, p in self._props.items() if p.sticky}
                self._state.sticky.update(sticky)

    # --- well-known properties --------------------------------------------------------------------------

    def get_identity_name(self, default: str = "") -> str:
        """This site's name (``server`` or a client's name)."""
        return str(self.get_prop(ReservedKey.IDENTITY_NAME, default))

    def get_job_id(self) -> str:
        """The job's id."""
        return str(self.get_prop(FLContextKey.CURRENT_RUN, ""))

    def get_run_number(self) -> str:
        """The job's id (NVFlare's older name)."""
        return self.get_job_id()

    def get_engine(self, default: Any = None) -> Any:
        """The engine (components, workspace, events)."""
        return self.get_prop(ReservedKey.ENGINE, default)

    def get_peer_context(self) -> FLContext | None:
        """The context the peer sent with the task or result (its public properties)."""
        peer = self.get_prop(FLContextKey.PEER_CONTEXT)
        return peer if isinstance(peer, FLContext) else None

    def set_peer_context(self, ctx: FLContext) -> None:
        """Set the peer's context."""
        self.set_prop(FLContextKey.PEER_CONTEXT, ctx, private=True, sticky=False)

    def get_run_abort_signal(self) -> Signal | None:
        """The run's abort signal."""
        return self.get_prop(FLContextKey.RUN_ABORT_SIGNAL)

    def get_job_meta(self) -> dict[str, Any] | None:
        """The job's meta, when known."""
        meta = self.get_prop(FLContextKey.JOB_META)
        return meta if isinstance(meta, dict) else None

    def get_custom_props(self) -> dict[str, Any] | None:
        """Custom properties set with :meth:`set_custom_props`."""
        return self.get_prop(FLContextKey.CUSTOM_PROPS)

    def set_custom_props(self, value: dict[str, Any]) -> None:
        """Set custom properties (a dict)."""
        self.set_prop(FLContextKey.CUSTOM_PROPS, value)

    def is_secure_mode(self) -> bool:
        """True in a deployment with a startup kit (mutual TLS); False in the simulator."""
        return bool(self.get_prop(FLContextKey.SECURE_MODE, False))

    def __enter__(self) -> FLContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync_sticky()


def peer_context(props: dict[str, Any] | None) -> FLContext:
    """A free-standing context holding a peer's public properties."""
    ctx = FLContext()
    for key, value in (props or {}).items():
        ctx.set_prop(key, value, private=False, sticky=False)
    return ctx


__all__ = ["FLContext", "SiteState", "Workspace", "forget_site", "peer_context", "site_state"]
