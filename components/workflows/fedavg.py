"""NVFlare's ``FedAvg`` (``nvflare.app_common.workflows.fedavg.FedAvg``): FedAvg over FLModels.

Each round: sample ``num_clients`` clients, send them the global model, average their results weighted by
``NUM_STEPS_CURRENT_ROUND`` (folded in as they arrive), update the global model, save it. NVFlare 2.5 and 2.6 take
only the :class:`~flruntime.components.workflows.base_fedavg.BaseFedAvg` arguments; the later FedAvg's arguments
are accepted too: an initial ``model``, ``task_name``, ``exclude_vars``, ``aggregation_weights``, a custom
``aggregator``, early stopping on a metric (``stop_cond``, ``patience``) and ``save_filename`` (used when there is
no persistor).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from flruntime.components.workflows.args import check_number
from flruntime.components.workflows.base_fedavg import BaseFedAvg, load_torch_model, numeric_metrics, save_torch_model
from flruntime.components.workflows.model_controller import DEFAULT_PERSISTOR_ID, TASK_TRAIN
from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor
from flruntime.runtime.context import ServerContext
from flruntime.runtime.messages import ModelMessage, ParamsType

#: The comparison operators of a stop condition (NVFlare's ``math_utils.operator_mapping``).
OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "=": operator.eq,
}

StopCondition = tuple[str, float, Callable[[Any, Any], bool]]


def parse_stop_cond(expr: str) -> StopCondition:
    """Parse ``"<key> <op> <value>"`` (``"accuracy >= 80"``) into the key, the number and the comparison.

    Raises:
        ValueError: not three space-separated parts, an unknown operator, or a value that is not a number.
    """
    tokens = expr.split(" ")
    if len(tokens) != 3:
        raise ValueError(f"Invalid early_stop_condition, expecting form of '<key> <op> <value>' but got '{expr}'")
    key, op, target = tokens
    compare = OPERATORS.get(op)
    if compare is None:
        raise ValueError(f"Invalid operator symbol '{op}': expecting one of <=, =, >=, <, >")
    try:
        value = float(target)
    except ValueError:
        raise ValueError(f"expect a number, but get '{target}' in '{expr}'") from None
    return key, value, compare


def stop_cond_problems(args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The validator's check of a ``stop_cond`` argument (a ``validate_args`` hook)."""
    expr = args.get("stop_cond")
    if isinstance(expr, str) and expr:
        try:
            parse_stop_cond(expr)
        except ValueError as exc:
            yield "stop_cond", str(exc)


def _params(model: Mapping[str, Any]) -> dict[str, Any]:
    """An initial model given in a config: lists become float32 arrays."""
    return {k: np.asarray(v, dtype=np.float32) if isinstance(v, list) else np.asarray(v) for k, v in model.items()}


class FedAvg(BaseFedAvg):
    """FedAvg rounds over FLModels (NVFlare's ``FedAvg``).

    Args:
        num_clients: clients sampled per round (more than there are: all of them, with an error logged).
        num_rounds: rounds to run.
        start_round: the first round's number.
        persistor_id: the model persistor (may be absent: see ``save_filename``).
        ignore_result_error: False: a failed client result fails the job; True: it is left out with a warning.
        allow_empty_global_weights: allow starting from a model without parameters.
        task_check_period: accepted for NVFlare compatibility (results are pushed).
        model: initial parameters (name → array) used instead of the persistor's.
        save_filename: without a persistor, the model is saved as this file of the server's workspace (with
            ``torch.save``; a file left by an earlier run is loaded at the start).
        aggregator: an object with ``accept_model(model)``, ``aggregate_model()`` and ``reset_stats()`` (NVFlare's
            ``ModelAggregator``) that aggregates instead of the weighted mean.
        stop_cond: stop early when the global model's metrics meet ``"<key> <op> <value>"`` (e.g.
            ``"accuracy >= 80"``); the model is then saved only when it improves on the key metric.
        patience: with ``stop_cond``, also stop after this many rounds without improvement.
        task_name: the task sent to clients.
        exclude_vars: variables whose name this regex finds are left out of the aggregate (and keep their value).
        aggregation_weights: a weight per client, multiplied by its ``NUM_STEPS_CURRENT_ROUND``.
        stream_to_disk: accepted for NVFlare compatibility (results are folded in as they arrive).
    """

    _run_task_arg = ("task_name", TASK_TRAIN)

    def __init__(
        self,
        num_clients: int | None = 3,
        num_rounds: int = 5,
        start_round: int = 0,
        persistor_id: Annotated[str, Ref(ModelPersistor, optional=True)] = DEFAULT_PERSISTOR_ID,
        ignore_result_error: bool = False,
        allow_empty_global_weights: bool = False,
        task_check_period: float = 0.5,
        model: dict[str, Any] | None = None,
        save_filename: str | None = "FL_global_model.pt",
        aggregator: Any = None,
        stop_cond: str | None = None,
        patience: int | None = None,
        task_name: str = TASK_TRAIN,
        exclude_vars: str | None = None,
        aggregation_weights: dict[str, float] | None = None,
        stream_to_disk: bool = False,
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
        if patience is not None:
            check_number("patience", patience, integer=True)
        self.model = model
        self.save_filename = save_filename
        self.aggregator = aggregator
        self.stop_cond = stop_cond
        self.stop_condition = parse_stop_cond(stop_cond) if stop_cond else None
        self.patience = patience
        self.task_name = task_name
        self.exclude_vars = exclude_vars
        self.aggregation_weights = dict(aggregation_weights or {})
        self.stream_to_disk = stream_to_disk
        self.num_fl_rounds_without_improvement = 0
        self.best_target_metric_value: Any = None

    @classmethod
    def validate_args(cls, args: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """Report a ``stop_cond`` that does not parse (before the job runs)."""
        return stop_cond_problems(args)

    def run(self, ctx: ServerContext | None = None) -> None:
        """Run the rounds (``ctx`` is bound by the engine's call; see :class:`ModelController`)."""
        self.info("Start FedAvg.")
        run = self.ctx
        run.total_rounds = self.num_rounds
        model = self._initial_model()
        model.total_rounds = self.num_rounds
        for rnd in range(self.start_round, self.start_round + self.num_rounds):
            if run.abort.is_set():
                return
            self.current_round = rnd
            self.info(f"Round {rnd} started.")
            model.current_round = rnd
            run.current_round = rnd
            run.bus.fire(EventType.ROUND_STARTED, round=rnd, model=model.copy())
            clients = self.sample_clients(self.num_clients)
            aggregate = self.train_round(
                model, clients, self.task_name, self.exclude_vars, self.aggregation_weights, self.aggregator
            )
            if aggregate is None:  # aborted
                return
            model = self.update_model(model, aggregate)
            model.current_round, model.total_rounds = rnd, self.num_rounds
            stop = False
            if self.stop_condition is not None:
                self.info(f"Round {rnd} global metrics: {model.metrics}")
                if self.is_curr_model_better(model):
                    self.info("New best model found.")
                    self.save_model(model)
                elif self.patience:
                    self.info(
                        "No metric improvement, num of FL rounds without improvement: "
                        f"{self.num_fl_rounds_without_improvement}"
                    )
                stop = self.should_stop(model.metrics)
            else:
                self.save_model(model)
            run.bus.fire(
                EventType.ROUND_DONE,
                round=rnd,
                model=model,
                contributors=list(self.round_contributors),
                failed=[],
                metrics=numeric_metrics(model),
            )
            if stop:
                self.info(f"Stopping at round={rnd} out of total_rounds={self.num_rounds}.")
                break
        self.info("Finished FedAvg.")

    def _initial_model(self) -> ModelMessage:
        if self.model is None:
            return self.load_model()
        self.info("Using provided model")
        model = ModelMessage(_params(self.model), ParamsType.FULL)
        self.ctx.models[GLOBAL_MODEL] = model
        self.ctx.bus.fire(EventType.INITIAL_MODEL_LOADED, model=model)
        return model

    def _model_file(self) -> Path | None:
        return Path(self.get_run_dir()) / self.save_filename if self.save_filename else None

    def load_model(self) -> ModelMessage:
        """The persistor's model; without a persistor, the ``save_filename`` file an earlier run left (or empty)."""
        path = self._model_file()
        if self.persistor is not None or path is None or not path.is_file():
            return super().load_model()
        self.info(f"Loading model from {path}")
        model = load_torch_model(path)
        self.ctx.models[GLOBAL_MODEL] = model
        self.ctx.bus.fire(EventType.INITIAL_MODEL_LOADED, model=model)
        return model

    def save_model(self, model: ModelMessage) -> None:
        """Save with the persistor; without one, as ``save_filename`` in the server's workspace."""
        path = self._model_file()
        if self.persistor is not None or path is None:
            super().save_model(model)
            return
        try:
            save_torch_model(path, model)
        except ImportError:
            self.error("persistor not configured and torch (needed for save_filename) is not installed: not saved")
            return
        self.info(f"Model saved to {path}")

    def should_stop(self, metrics: dict[str, Any] | None = None) -> bool:
        """True when the stop condition holds, or ``patience`` rounds passed without improvement."""
        if self.stop_condition is None or metrics is None:
            return False
        if self.patience and self.patience <= self.num_fl_rounds_without_improvement:
            self.info(f"Exceeded the number of FL rounds ({self.patience}) without improvements")
            return True
        key, target, compare = self.stop_condition
        value = metrics.get(key)
        if value is None:
            self.warning(f"Stop criteria key '{key}' doesn't exist in metrics: {list(metrics)}")
            return False
        if compare(value, target):
            self.info(f"Early stop condition satisfied: {self.stop_cond}")
            return True
        return False

    def is_curr_model_better(self, curr_model: ModelMessage) -> bool:
        """True when ``curr_model``'s key metric beats the best so far (by the stop condition's comparison)."""
        if self.stop_condition is None:
            return True
        value = (curr_model.metrics or {}).get(self.stop_condition[0])
        if value is None:
            return False
        compare = self.stop_condition[2]
        if self.best_target_metric_value is None or compare(value, self.best_target_metric_value):
            if self.patience and self.best_target_metric_value == value:
                self.num_fl_rounds_without_improvement += 1
                return False
            self.best_target_metric_value = value
            self.num_fl_rounds_without_improvement = 0
            return True
        self.num_fl_rounds_without_improvement += 1
        return False
