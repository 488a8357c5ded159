"""Role interfaces: what a component must be to fill a place in a job.

They are deliberately small ABCs. The validator uses them to prove that a reference such as
``aggregator_id`` names a component of the right role, and that ``workflows`` and ``executors``
hold workflows and executors; the runtime calls the methods they declare.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping
from typing import Any


class Workflow(ABC):
    """A server-side controller that runs rounds and sends tasks to clients."""

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """Return the task names this workflow sends, given its constructor args (used by the validator)."""
        return set()


class Executor(ABC):
    """A client-side handler of tasks sent by workflows."""


class Aggregator(ABC):
    """Combines client results into one result per round."""


class ModelPersistor(ABC):
    """Loads the initial global model and saves global models."""


class ShareableGenerator(ABC):
    """Converts between the global model and the message sent to clients."""


class Filter(ABC):
    """Transforms task data or task results on their way between server and client."""


class ModelLocator(ABC):
    """Finds server-side models by name (for cross-site evaluation)."""


class Pipe(ABC):
    """A channel between a client engine and a process it launched."""


class Launcher(ABC):
    """Starts and stops an external training process."""


class PersistorFilter(ABC):
    """Processes a model on its way into or out of a persistor (e.g. HE serialisation)."""


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
