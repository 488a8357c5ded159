"""Example components: how a job's own code declares roles, typed args and references.

The classes hold only their configuration; they show what ``flruntime validate`` checks. Runtime
methods (running rounds, executing tasks, aggregating) are added with the runtime's role contracts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from flruntime import Ref
from flruntime.roles import Aggregator, Executor, Workflow


class MeanAggregator(Aggregator):
    """Averages client results, weighted by their number of local steps when ``weighted``."""

    def __init__(self, weighted: bool = True) -> None:
        self.weighted = weighted


class RoundRobinWorkflow(Workflow):
    """Sends ``task_name`` to the clients for ``num_rounds`` rounds and aggregates with ``aggregator_id``."""

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        aggregator_id: Annotated[str, Ref(Aggregator)] = "aggregator",
        task_name: str = "train",
    ) -> None:
        if num_rounds < 1 or min_clients < 1:
            raise ValueError("num_rounds and min_clients must be at least 1")
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.aggregator_id = aggregator_id
        self.task_name = task_name

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """Return the one task this workflow sends."""
        return {str(args.get("task_name", "train"))}


class ScaleExecutor(Executor):
    """Handles the training task on a client."""

    def __init__(self, lr: float, site: str = "") -> None:
        self.lr = lr
        self.site = site
