"""The engine that NVFlare components reach through ``fl_ctx.get_engine()``, and the contexts it makes.

It is a view of one site's flruntime run: its components (the NVFlare objects, not their wrappers), its
workspace, its event bus (``fire_event`` reaches every component's ``handle_event`` with the same context),
and the clients (on the server). ``system_panic`` fails the run with the reason.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flruntime.compat.component import Signal
from flruntime.compat.constants import AppConstants, FLContextKey, ReservedKey
from flruntime.compat.fl_context import FLContext, Workspace, site_state

if TYPE_CHECKING:
    from flruntime.runtime.context import RunContext

log = logging.getLogger(__name__)

#: The key of an event's data that holds the FLContext it was fired with.
FL_CTX = "_fl_ctx"


@dataclass(frozen=True)
class Client:
    """A client as NVFlare's ``engine.get_clients()`` lists it."""

    name: str

    def get_fqsn(self) -> str:
        """The client's fully qualified site name (its name: flruntime has no hierarchy)."""
        return self.name


def unwrap(obj: Any) -> Any:
    """The NVFlare object a flruntime wrapper holds, else ``obj``."""
    return getattr(obj, "nvflare_component", obj)


class Engine:
    """One site's run, as NVFlare components see it.

    Args:
        run: the run.
    """

    def __init__(self, run: RunContext) -> None:
        self.run = run

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.run.job_id

    def get_workspace(self) -> Workspace:
        """The workspace (run, app and config folders)."""
        return Workspace(self.run)

    def get_component(self, component_id: str) -> Any:
        """Component ``component_id`` of this site, or None."""
        obj = self.run.components.get(component_id)
        return None if obj is None else unwrap(obj)

    def get_all_components(self) -> dict[str, Any]:
        """Every component of this site by id."""
        return {k: unwrap(v) for k, v in self.run.components.items()}

    def get_widget(self, widget_id: str) -> Any:
        """Same as :meth:`get_component`."""
        return self.get_component(widget_id)

    def new_context(self) -> FLContext:
        """A new context of this site's run (with its sticky properties)."""
        return make_context(self.run)

    def fire_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Fire ``event_type`` on this site's bus with ``fl_ctx``."""
        self.run.bus.fire(event_type, None, **{FL_CTX: fl_ctx})

    def send_fed_event(self, event_type: str, data: Any) -> None:
        """Send an event to the server (clients only; its data must be JSON-like)."""
        try:
            payload = json.loads(json.dumps(dict(data), default=str))
        except (TypeError, ValueError) as exc:
            log.warning("%s: fed event %s not sent: its data is not JSON-like (%s)", self.run.site, event_type, exc)
            return
        self.run.fire_fed_event(event_type, payload)

    def get_clients(self) -> list[Client]:
        """The job's clients (on the server; empty on a client)."""
        comm = getattr(self.run, "comm", None)
        return [Client(name) for name in comm.clients()] if comm is not None else []

    def panic(self, reason: str) -> None:
        """Fail the run with ``reason``."""
        self.run.fail(f"system panic: {reason}")

    def task_panic(self, reason: str) -> None:
        """Fail the task running now with ``reason``."""
        state = site_state(self.run)
        state.task_panic = state.task_panic or reason

    def get_run_abort_signal(self) -> Signal:
        """The run's abort signal."""
        return Signal(event=self.run.abort)


def make_context(run: RunContext) -> FLContext:
    """A context of ``run`` with NVFlare's standard properties (identity, job, app root, engine, round)."""
    state = site_state(run)
    if state.engine is None:
        state.engine = Engine(run)
    engine = state.engine
    ctx = FLContext(state)
    public = {ReservedKey.IDENTITY_NAME: run.site, FLContextKey.CURRENT_RUN: run.job_id}
    public[FLContextKey.CURRENT_JOB_ID] = run.job_id
    for key, value in public.items():
        ctx.set_prop(key, value, private=False, sticky=False)
    private = {
        ReservedKey.ENGINE: engine,
        FLContextKey.APP_ROOT: str(run.workspace),
        FLContextKey.WORKSPACE_ROOT: str(run.workspace.parent),
        FLContextKey.WORKSPACE_OBJECT: Workspace(run),
        FLContextKey.RUN_ABORT_SIGNAL: Signal(event=run.abort),
        FLContextKey.ARGS: None,
    }
    for key, value in private.items():
        ctx.set_prop(key, value, private=True, sticky=False)
    if run.current_round is not None and ctx.get_prop(AppConstants.CURRENT_ROUND) is None:
        ctx.set_prop(AppConstants.CURRENT_ROUND, run.current_round, private=True, sticky=False)
    if run.total_rounds is not None and ctx.get_prop(AppConstants.NUM_ROUNDS) is None:
        ctx.set_prop(AppConstants.NUM_ROUNDS, run.total_rounds, private=True, sticky=False)
    return ctx


__all__ = ["FL_CTX", "Client", "Engine", "make_context", "unwrap"]
