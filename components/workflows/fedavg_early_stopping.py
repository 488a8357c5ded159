"""NVFlare's ``PTFedAvgEarlyStopping`` (``nvflare.app_opt.pt.fedavg_early_stopping``): FedAvg that stops early.

The rounds start from ``initial_model``'s ``state_dict()`` (a PyTorch module, usually a nested component; no
persistor is used), run as in FedAvg, and after each round the best global model so far (by the stop condition's
metric and comparison) is saved with ``torch.save`` as ``save_filename`` in the server's workspace. The rounds stop
once the global model's metrics meet ``stop_cond`` (``"accuracy >= 80"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from flruntime.components.workflows.base_fedavg import BaseFedAvg, load_torch_model, numeric_metrics, save_torch_model
from flruntime.components.workflows.fedavg import StopCondition, parse_stop_cond, stop_cond_problems
from flruntime.components.workflows.model_controller import DEFAULT_PERSISTOR_ID, TASK_TRAIN
from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor
from flruntime.runtime.context import ServerContext
from flruntime.runtime.messages import ModelMessage, ParamsType


def initial_params(initial_model: Any) -> dict[str, Any]:
    """The parameters of an initial model: a module's ``state_dict()`` as numpy arrays (None: no parameters)."""
    if initial_model is None:
        return {}
    state = initial_model.state_dict() if hasattr(initial_model, "state_dict") else initial_model
    if not isinstance(state, Mapping):
        raise TypeError(f"initial_model must be a PyTorch module, got {type(initial_model).__name__}")
    from flruntime.components.persistors.pt_file import to_numpy

    return {str(k): to_numpy(v) for k, v in state.items()}


class PTFedAvgEarlyStopping(BaseFedAvg):
    """FedAvg with early stopping and best-model selection (NVFlare's ``PTFedAvgEarlyStopping``).

    Args:
        num_clients: clients sampled per round.
        num_rounds: rounds to run at most.
        start_round: the first round's number.
        persistor_id: accepted as in NVFlare (this workflow starts from ``initial_model`` and saves its own file).
        ignore_result_error: False: a failed client result fails the job; True: it is left out with a warning.
        allow_empty_global_weights: as :class:`ModelController`.
        task_check_period: accepted for NVFlare compatibility.
        stop_cond: ``"<key> <op> <value>"``: stop once the global model's metric ``key`` compares so with the
            value; the same comparison picks the best model. None: run every round, the latest model is the best.
        save_filename: the best model's file in the server's workspace (``torch.save`` of tensors, plus
            ``<save_filename>.metadata`` with its metrics and rounds as JSON).
        initial_model: the PyTorch module whose ``state_dict()`` is the initial global model (None: empty).
    """

    _run_task_arg = (None, TASK_TRAIN)

    def __init__(
        self,
        num_clients: int | None = 3,
        num_rounds: int = 5,
        start_round: int = 0,
        persistor_id: Annotated[str, Ref(ModelPersistor, optional=True)] = DEFAULT_PERSISTOR_ID,
        ignore_result_error: bool = False,
        allow_empty_global_weights: bool = False,
        task_check_period: float = 0.5,
        stop_cond: str | None = None,
        save_filename: str = "FL_global_model.pt",
        initial_model: Any = None,
    ) -> None:
        super().__init__(
            num_clients,
            num_rounds,
            start_round,
            persistor_id,
            ignore_result_error,
            allow_empty_global_weights,
            task_check_period,
        )
        self.stop_cond = stop_cond
        self.stop_condition: StopCondition | None = parse_stop_cond(stop_cond) if stop_cond else None
        self.save_filename = save_filename
        self.initial_model = initial_model
        self.best_model: ModelMessage | None = None

    @classmethod
    def validate_args(cls, args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Report a ``stop_cond`` that does not parse (before the job runs)."""
        return stop_cond_problems(args)

    def run(self, ctx: ServerContext | None = None) -> None:
        """Run the rounds until the stop condition holds (``ctx`` is bound by the engine's call)."""
        self.info("Start FedAvg.")
        run = self.ctx
        run.total_rounds = self.num_rounds
        model = ModelMessage(initial_params(self.initial_model), ParamsType.FULL, total_rounds=self.num_rounds)
        run.models[GLOBAL_MODEL] = model
        for rnd in range(self.start_round, self.start_round + self.num_rounds):
            if run.abort.is_set():
                return
            self.current_round = rnd
            self.info(f"Round {rnd} started.")
            model.current_round = rnd
            run.current_round = rnd
            run.bus.fire(EventType.ROUND_STARTED, round=rnd, model=model.copy())
            clients = self.sample_clients(self.num_clients)
            aggregate = self.train_round(model, clients)
            if aggregate is None:  # aborted
                return
            model = self.update_model(model, aggregate)
            model.current_round, model.total_rounds = rnd, self.num_rounds
            self.info(f"Round {rnd} global metrics: {model.metrics}")
            self.select_best_model(model)
            assert self.best_model is not None
            self.save_model(self.best_model, str(run.workspace / self.save_filename))
            stop = self.should_stop(model.metrics, self.stop_condition)
            run.bus.fire(
                EventType.ROUND_DONE,
                round=rnd,
                model=model,
                contributors=list(self.round_contributors),
                failed=[],
                metrics=numeric_metrics(model),
            )
            if stop:
                self.info(
                    f"Stopping at round={rnd} out of total_rounds={self.num_rounds}. "
                    f"Early stop condition satisfied: {self.stop_cond}"
                )
                break
        self.info("Finished FedAvg.")

    def should_stop(self, metrics: dict[str, Any] | None = None, stop_condition: StopCondition | None = None) -> bool:
        """True when ``metrics`` meet ``stop_condition``.

        Raises:
            RuntimeError: the condition's key is not among the metrics.
        """
        if stop_condition is None or metrics is None:
            return False
        key, target, compare = stop_condition
        value = metrics.get(key)
        if value is None:
            raise RuntimeError(f"stop criteria key '{key}' doesn't exists in metrics")
        return bool(compare(value, target))

    def select_best_model(self, curr_model: ModelMessage) -> None:
        """Keep a copy of ``curr_model`` when it is the first or beats the best (by the stop condition)."""
        if self.best_model is None or self.stop_condition is None:
            self.best_model = curr_model.copy()
            return
        metric, _, compare = self.stop_condition
        if self.is_curr_model_better(self.best_model, curr_model, metric, compare):
            self.info("Current model is new best model.")
            self.best_model = curr_model.copy()

    def is_curr_model_better(
        self,
        best_model: ModelMessage,
        curr_model: ModelMessage,
        target_metric: str,
        op_fn: Callable[[Any, Any], bool],
    ) -> bool:
        """True when ``curr_model``'s ``target_metric`` compares with ``op_fn`` to the best model's."""
        if not curr_model.metrics or target_metric not in curr_model.metrics:
            return False
        best = (best_model.metrics or {}).get(target_metric)
        return best is None or bool(op_fn(curr_model.metrics[target_metric], best))

    def save_model(self, model: ModelMessage, filepath: str = "") -> None:
        """Write ``model`` with ``torch.save`` to ``filepath`` (default: ``save_filename`` in the workspace)."""
        save_torch_model(Path(filepath) if filepath else self.ctx.workspace / self.save_filename, model)

    def load_model(self, filepath: str = "") -> ModelMessage:
        """Read a model :meth:`save_model` wrote (default: ``save_filename`` in the workspace)."""
        return load_torch_model(Path(filepath) if filepath else self.ctx.workspace / self.save_filename)
