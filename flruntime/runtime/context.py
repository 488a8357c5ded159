"""Typed contexts handed to components: the run, a server workflow's view, one task."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flruntime.events.bus import EventBus

if TYPE_CHECKING:
    from flruntime.runtime.communicator import Communicator
    from flruntime.runtime.messages import ModelMessage

T = TypeVar("T")


@dataclass
class RunContext:
    """One site's view of a running job.

    Attributes:
        job_id: the job's id.
        site: this site's name (``server`` or a client name).
        workspace: this site's folder for the job (models, logs, results).
        app_dir: the app folder (config/ and custom/).
        bus: this site's event bus.
        abort: set when the job is being aborted.
        components: the site's components by id.
        resume: True when the run continues an earlier one from its last saved state.
        current_round: the round being run (set by the workflow).
        total_rounds: the number of rounds (set by the workflow).
        failure: why a component stopped the run (:meth:`fail`), "" while none did.
    """

    job_id: str
    site: str
    workspace: Path
    app_dir: Path
    bus: EventBus
    abort: threading.Event = field(default_factory=threading.Event)
    components: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    current_round: int | None = None
    total_rounds: int | None = None
    fed_event_sink: Callable[[str, dict[str, Any]], None] | None = None
    failure: str = ""

    def fail(self, reason: str) -> None:
        """Stop the run because of ``reason`` (the first reason is kept): the job ends failed and names it."""
        if not self.failure:
            self.failure = reason
        self.abort.set()

    def fire_fed_event(self, name: str, data: dict[str, Any]) -> None:
        """Send an event to the server (from a client): it fires there as ``name`` with this site as origin.

        ``data`` must be JSON-compatible. On the server, or before the engine is connected, it is dropped.
        """
        if self.fed_event_sink is not None:
            self.fed_event_sink(name, data)

    def component(self, component_id: str, role: type[T]) -> T:
        """Return component ``component_id`` as a ``role`` (the validator has proven it exists)."""
        obj = self.components.get(component_id)
        if not isinstance(obj, role):
            raise KeyError(f"{self.site}: no {role.__name__} with id '{component_id}'")
        return obj


@dataclass
class ServerContext(RunContext):
    """What a workflow sees: the run plus the communicator that reaches the clients.

    Attributes:
        comm: the communicator.
        models: models one workflow hands to the next, by name (NVFlare's FLContext property
            ``global_model``: ``InitializeGlobalWeights`` puts the clients' initial weights there and
            ``ScatterAndGather`` starts from them when its persistor loads no parameters).
    """

    comm: Communicator | None = None
    models: dict[str, ModelMessage] = field(default_factory=dict)

    @property
    def communicator(self) -> Communicator:
        """The communicator (always set by the server engine)."""
        assert self.comm is not None
        return self.comm


@dataclass
class TaskContext:
    """What an executor or filter sees while one task runs."""

    run: RunContext
    task_name: str
    task_id: str
    headers: dict[str, Any] = field(default_factory=dict)

    @property
    def site(self) -> str:
        """This site's name."""
        return self.run.site

    @property
    def abort(self) -> threading.Event:
        """Set when the task or the job is aborted."""
        return self.run.abort

    @property
    def current_round(self) -> int | None:
        """The round this task belongs to (from the task's headers)."""
        value = self.headers.get("current_round")
        return int(value) if value is not None else None
