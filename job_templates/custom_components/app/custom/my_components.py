"""Example components: how a job's own code implements roles, typed args and references.

The workflow sends a numpy model to every client each round and averages what comes back with the
aggregator it references by id; the executor moves each value towards its site's target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np

from flruntime import Ref
from flruntime.roles import Aggregator, Executor, Workflow
from flruntime.runtime.context import RunContext, ServerContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType, TaskResult


class MeanAggregator(Aggregator):
    """Averages client models, weighted by their number of local steps when ``weighted``."""

    def __init__(self, weighted: bool = True) -> None:
        self.weighted = weighted
        self.reset(None)

    def accept(self, site: str, result: ModelMessage, ctx: RunContext | None) -> bool:
        """Add one client's model to the running sum."""
        weight = float(result.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND, 1)) if self.weighted else 1.0
        for name, value in (result.params or {}).items():
            self.total[name] = self.total.get(name, 0) + weight * value
        self.weight += weight
        return True

    def aggregate(self, ctx: RunContext | None) -> ModelMessage:
        """Return the weighted mean."""
        return ModelMessage({k: v / self.weight for k, v in self.total.items()}, ParamsType.FULL)

    def reset(self, ctx: RunContext | None) -> None:
        """Start a new round."""
        self.total: dict[str, Any] = {}
        self.weight = 0.0


class RoundRobinWorkflow(Workflow):
    """Sends ``task_name`` to the clients for ``num_rounds`` rounds and aggregates with ``aggregator_id``."""

    def __init__(
        self,
        num_rounds: int,
        min_clients: int,
        aggregator_id: Annotated[str, Ref(Aggregator)] = "aggregator",
        task_name: str = "train",
        size: int = 4,
    ) -> None:
        if num_rounds < 1 or min_clients < 1:
            raise ValueError("num_rounds and min_clients must be at least 1")
        self.num_rounds = num_rounds
        self.min_clients = min_clients
        self.aggregator_id = aggregator_id
        self.task_name = task_name
        self.model = ModelMessage({"w": np.zeros(size, dtype=np.float32)})

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """Return the one task this workflow sends."""
        return {str(args.get("task_name", "train"))}

    def run(self, ctx: ServerContext) -> None:
        """Run the rounds; the final model is saved as ``model.npy`` in the server's workspace."""
        aggregator = ctx.component(self.aggregator_id, Aggregator)
        if len(ctx.communicator.clients()) < self.min_clients:
            raise RuntimeError(f"needs {self.min_clients} clients, has {len(ctx.communicator.clients())}")
        for rnd in range(self.num_rounds):
            ctx.current_round = rnd

            def accept(result: TaskResult) -> None:
                if result.data is not None:
                    aggregator.accept(result.site, result.data, ctx)

            ctx.communicator.broadcast_and_wait(
                self.task_name, self.model, headers={"current_round": rnd}, on_result=accept, abort=ctx.abort
            )
            self.model = aggregator.aggregate(ctx)
            aggregator.reset(ctx)
        np.save(ctx.workspace / "model.npy", self.model.params["w"])


class ScaleExecutor(Executor):
    """Moves every value a step of size ``lr`` towards this site's number (site-3 → 3.0)."""

    def __init__(self, lr: float, site: str = "") -> None:
        self.lr = lr
        self.site = site

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Take one step and return the new local model."""
        target = float(self.site.rsplit("-", 1)[-1]) if self.site[-1:].isdigit() else 1.0
        params = {k: v + self.lr * (target - v) for k, v in (data.params or {}).items()}
        return ModelMessage(params, ParamsType.FULL, meta={MetaKey.NUM_STEPS_CURRENT_ROUND: 1})
