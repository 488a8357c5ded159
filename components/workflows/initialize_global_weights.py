"""Initial global weights from the clients (NVFlare's ``InitializeGlobalWeights``).

A workflow that runs before FedAvg: it sends ``get_weights`` to the clients, keeps the weights of the first
client that answers (or of one named client), and leaves them as the run's ``global_model``. A following
``ScatterAndGather`` whose persistor loads no parameters starts from them (as in NVFlare, a persistor that
does load parameters wins). Any bad answer, or no weights at all, fails the job (NVFlare: ``system_panic``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL

from flruntime.roles import Workflow
from flruntime.runtime.context import ServerContext
from flruntime.runtime.messages import ModelMessage, ParamsType, ReturnCode, TaskResult

log = logging.getLogger(__name__)

#: NVFlare's ``WeightMethod`` values.
FIRST = "first"
CLIENT = "client"


class InitializeGlobalWeights(Workflow):
    """Collects model weights from the clients and keeps one client's as the initial global model.

    Args:
        task_name: the task sent to the clients to collect their weights.
        min_responses_required: answers needed before the wait may end (0: all clients).
        wait_time_after_min_received: seconds to wait for more answers once enough arrived.
        task_timeout: seconds to wait in all (0: no limit).
        weights_prop_name: the name the weights are kept under (read by ``ScatterAndGather`` as ``global_model``).
        weight_method: ``first``: the first client to answer; ``client``: the client ``weights_client_name``.
        weights_client_name: a client name, or a list of them: the task goes only to these clients
            (default: every client). With ``weight_method="client"`` it must be one name.
    """

    def __init__(
        self,
        task_name: str = "get_weights",
        min_responses_required: int = 0,
        wait_time_after_min_received: float = 0,
        task_timeout: float = 0,
        weights_prop_name: str = GLOBAL_MODEL,
        weight_method: str = FIRST,
        weights_client_name: str | list[str] | None = None,
    ) -> None:
        if weight_method not in (FIRST, CLIENT):
            raise ValueError(f"invalid weight_method '{weight_method}' (use '{FIRST}' or '{CLIENT}')")
        if weight_method == CLIENT and not isinstance(weights_client_name, str):
            raise ValueError(f"weight_method '{CLIENT}' needs weights_client_name: one client name")
        if isinstance(min_responses_required, bool) or min_responses_required < 0:
            raise ValueError(f"min_responses_required must be an int >= 0, got {min_responses_required!r}")
        if wait_time_after_min_received < 0 or task_timeout < 0:
            raise ValueError("wait_time_after_min_received and task_timeout must not be negative")
        self.task_name = task_name
        self.min_responses_required = min_responses_required
        self.wait_time_after_min_received = float(wait_time_after_min_received)
        self.task_timeout = float(task_timeout)
        self.weights_prop_name = weights_prop_name
        self.weight_method = weight_method
        self.weights_client_name = weights_client_name
        if isinstance(weights_client_name, str):
            self.clients: list[str] | None = [weights_client_name]
        else:
            self.clients = list(weights_client_name) if weights_client_name else None

    @classmethod
    def sent_tasks(cls, args: Mapping[str, Any]) -> set[str]:
        """The task that collects the weights."""
        return {str(args.get("task_name", "get_weights"))}

    def _wanted(self, site: str) -> bool:
        return self.weight_method == FIRST or site == self.weights_client_name

    def run(self, ctx: ServerContext) -> None:
        """Collect the weights and keep the chosen client's.

        Raises:
            RuntimeError: a client answered with an error or without full weights, or no weights came.
        """
        chosen: list[TaskResult] = []
        bad: list[str] = []

        def on_result(result: TaskResult) -> None:
            data = result.data
            if result.rc != ReturnCode.OK or data is None:
                bad.append(f"{result.site} returned {result.rc} {result.error}".rstrip())
            elif data.params_type != ParamsType.FULL:
                bad.append(f"{result.site} returned {data.params_type} weights (FULL weights are needed)")
            elif not data.params:
                bad.append(f"{result.site} returned no model weights")
            elif not chosen and self._wanted(result.site):
                chosen.append(result)

        targets = self.clients if self.clients is not None else ctx.communicator.clients()
        log.info("collecting initial weights from %s (task '%s')", ", ".join(targets), self.task_name)
        ctx.communicator.broadcast_and_wait(
            self.task_name,
            ModelMessage(),
            targets=targets,
            min_responses=self.min_responses_required or None,
            wait_time_after_min_received=self.wait_time_after_min_received,
            timeout=self.task_timeout,
            on_result=on_result,
            abort=ctx.abort,
        )
        if ctx.abort.is_set():
            return
        if bad:
            raise RuntimeError("initializing the global weights failed: " + "; ".join(bad))
        if not chosen:
            raise RuntimeError(f"no weights available from clients (task '{self.task_name}')")
        result = chosen[0]
        assert result.data is not None and result.data.params is not None
        ctx.models[self.weights_prop_name] = ModelMessage(dict(result.data.params), ParamsType.FULL)
        log.info("initial global weights from %s (%d variables)", result.site, len(result.data.params))
