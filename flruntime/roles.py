"""Role interfaces: what a component must be to fill a place in a job.

They are small ABCs. The validator uses them to prove that a reference such as ``aggregator_id``
names a component of the right role and that ``workflows`` and ``executors`` hold workflows and
executors; the engines call the methods they declare. Any component may also define
``setup(ctx: RunContext)`` and ``teardown(ctx: RunContext)``; the engine calls them at the start
and end of the run (``setup`` is where a component subscribes to events).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flruntime.runtime.context import RunContext, ServerContext, TaskContext
    from flruntime.runtime.messages import ModelMessage
    from flruntime.runtime.streamed import ResultSink
    from flruntime.transport.codec import ArraySpec


class Workflow(ABC):
    """A server-side controller that runs rounds and sends tasks to clients."""

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str] | None:
        """Return the task names this workflow sends, given its constructor args (used by the validator).

        None: not known before the run (a user's own ``ModelController`` subclass decides in its code), so the
        validator does not warn about executors whose tasks no workflow seems to send.
        """
        return set()

    @abstractmethod
    def run(self, ctx: ServerContext) -> None:
        """Run the workflow to completion (or until ``ctx.abort`` is set)."""


class Executor(ABC):
    """A client-side handler of tasks sent by workflows."""

    @abstractmethod
    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Handle one task and return its result; raise to report an execution error."""


class Aggregator(ABC):
    """Combines client results into one result per round, as they arrive."""

    @abstractmethod
    def accept(self, site: str, result: ModelMessage, ctx: RunContext) -> bool:
        """Fold one client's result in; return False when it is rejected."""

    def open_contribution(
        self, site: str, result: ModelMessage, arrays: list[ArraySpec], ctx: RunContext
    ) -> ResultSink | None:
        """Take a result whose arrays are still arriving, piece by piece; None (the default): send it whole.

        Args:
            site: the client.
            result: the result without its arrays (metrics, meta, params type, round; ``params`` is empty).
            arrays: its arrays, in the order their pieces will come.
            ctx: the run.

        Returns:
            A sink for the pieces (closing it says whether the result was accepted), or None when this
            aggregator needs the result whole (it then comes through :meth:`accept`).
        """
        return None

    @abstractmethod
    def aggregate(self, ctx: RunContext) -> ModelMessage:
        """Return the aggregate of everything accepted since the last reset."""

    @abstractmethod
    def reset(self, ctx: RunContext) -> None:
        """Forget everything accepted so far."""


class ModelPersistor(ABC):
    """Loads the initial global model and saves global models."""

    @abstractmethod
    def load(self, ctx: RunContext) -> ModelMessage:
        """Return the initial (or, on resume, the last saved) global model."""

    @abstractmethod
    def save(self, model: ModelMessage, ctx: RunContext) -> None:
        """Save the current global model."""


class ShareableGenerator(ABC):
    """Converts between the global model and the data sent to clients."""

    @abstractmethod
    def to_task_data(self, global_model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the task data that carries ``global_model`` to the clients."""

    @abstractmethod
    def update(self, global_model: ModelMessage, aggregate: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the new global model from the old one and the round's aggregate."""


class Filter(ABC):
    """Transforms task data or task results on their way between server and client."""

    @abstractmethod
    def process(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Return the filtered message."""


class ModelLocator(ABC):
    """Finds server-side models by name (for cross-site evaluation)."""

    @abstractmethod
    def model_names(self, ctx: RunContext) -> list[str]:
        """Return the names of the models available."""

    @abstractmethod
    def locate(self, name: str, ctx: RunContext) -> ModelMessage | None:
        """Return the model called ``name``, or None."""


class Pipe(ABC):
    """A two-sided message channel between a client engine and a training script (often in another process).

    One side is ``ACTIVE``, the other ``PASSIVE``; a message is a topic and a payload of bytes (tasks and
    results travel as :mod:`flruntime.transport.codec` bytes, never pickles). Heartbeats, acknowledgements
    and peer-liveness checks live one layer up, in :class:`flruntime.pipes.endpoint.PipeEndpoint`.
    """

    @abstractmethod
    def open(self, channel: str = "task") -> None:
        """Start using the pipe for ``channel`` (``task`` or ``metric``); a PASSIVE side becomes reachable."""

    @abstractmethod
    def close(self) -> None:
        """Stop using the pipe and free what it holds (idempotent)."""

    @abstractmethod
    def send(self, topic: str, payload: bytes | bytearray = b"", timeout: float | None = None) -> bool:
        """Send one message; False when it could not be handed over within ``timeout`` (no peer, closed)."""

    @abstractmethod
    def receive(self, timeout: float | None = None) -> tuple[str, bytes] | None:
        """Return the next ``(topic, payload)`` from the peer, or None when none came within ``timeout``."""

    def clear(self) -> None:  # noqa: B027 - optional: pipes that buffer nothing have nothing to drop
        """Drop messages still waiting in either direction (before a restarted peer connects)."""

    def export(self) -> dict[str, Any]:
        """Return ``{"CLASS_NAME": ..., "ARG": {...}}`` that builds the peer's side in another process."""
        raise NotImplementedError(f"{type(self).__name__} cannot connect a separate process")

    @property
    def peer_closed(self) -> bool:
        """True when the pipe knows the peer has gone (a closed connection); False when it cannot tell."""
        return False


class Launcher(ABC):
    """Starts and stops an external training process.

    Attributes:
        launch_once: True: one process serves every task of the job (relaunched if it dies);
            False: a process per task.
    """

    launch_once: bool = True

    @abstractmethod
    def launch(self, ctx: RunContext, env: Mapping[str, str] | None = None) -> None:
        """Start the process, with ``env`` added to its environment (stops a previous one first)."""

    @abstractmethod
    def exit_code(self) -> int | None:
        """The exit code of the last process (negative: killed by that signal); None while it runs or before."""

    @abstractmethod
    def is_running(self) -> bool:
        """True while the last process launched is alive."""

    @abstractmethod
    def stop(self, grace: float | None = None) -> int | None:
        """Stop the process (waiting up to ``grace`` seconds for it to exit by itself); return its exit code."""


class PersistorFilter(ABC):
    """Processes a model on its way into or out of a persistor (e.g. HE serialisation).

    Each hook returns the model to use instead (by default the one it was given, unchanged).
    """

    def process_post_load(self, model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Transform a model the persistor has just loaded, before a workflow sees it."""
        return model

    def process_pre_save(self, model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Transform a model the persistor is about to write."""
        return model


ROLE_NAMES: dict[type, str] = {
    Workflow: "workflow",
    Executor: "executor",
    Aggregator: "aggregator",
    ModelPersistor: "model persistor",
    ShareableGenerator: "shareable generator",
    Filter: "filter",
    ModelLocator: "model locator",
    Pipe: "pipe",
    Launcher: "launcher",
    PersistorFilter: "persistor filter",
}


def role_name(role: type) -> str:
    """Return a readable name for a role class (``Aggregator`` → ``an aggregator``)."""
    name = ROLE_NAMES.get(role, role.__name__)
    return ("an " if name[0] in "aeiou" else "a ") + name
