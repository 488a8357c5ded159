"""NVFlare's ``BaseFedAvg``: a :class:`ModelController` with FedAvg's aggregation and model update.

``aggregate(results)`` is the step-weighted mean of the results' parameters (weight: each result's
``meta["NUM_STEPS_CURRENT_ROUND"]``, 1.0 when missing) and, when every result has metrics, of their metrics.
``update_model(model, aggregate)`` adds a DIFF aggregate to the global model or replaces its variables by a FULL
one. Subclasses write ``run``; :meth:`BaseFedAvg.train_round` runs one round for them, folding results into the
mean as they arrive (server memory O(model)) unless the subclass replaced ``aggregate`` or ``aggregate_fn``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from flruntime.components.aggregators.weighted import WeightedSum
from flruntime.components.workflows.args import check_number
from flruntime.components.workflows.model_controller import (
    CLIENT_NAME,
    CLIENT_UNKNOWN,
    DEFAULT_PERSISTOR_ID,
    ModelController,
)
from flruntime.components.workflows.scatter_and_gather import GLOBAL_MODEL

from flruntime.events.types import EventType
from flruntime.graph.refs import Ref
from flruntime.roles import ModelPersistor
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

#: Meta key of an aggregate: how many results it averages.
NR_AGGREGATED = "nr_aggregated"


def steps_of(result: ModelMessage) -> float:
    """A result's aggregation weight: its ``NUM_STEPS_CURRENT_ROUND`` (1.0 when missing or None)."""
    steps = result.meta.get(MetaKey.NUM_STEPS_CURRENT_ROUND)
    return 1.0 if steps is None else float(steps)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass
class ModelMean:
    """The weighted mean of results, folded in one at a time: parameters, and metrics while every result has them.

    Attributes:
        exclude: variables whose name this pattern finds (``re.search``) are left out of the mean.
    """

    exclude: re.Pattern[str] | None = None
    params: WeightedSum = field(default_factory=WeightedSum)
    metric_total: dict[str, float] = field(default_factory=dict)
    metric_weight: dict[str, float] = field(default_factory=dict)
    all_metrics: bool = True
    count: int = 0
    params_type: ParamsType | None = None
    contributors: list[str] = field(default_factory=list)

    def add(self, result: ModelMessage, weight: float) -> None:
        """Fold one result in with ``weight``."""
        if self.params_type is None:
            self.params_type = result.params_type
        self.params.add(result.params or {}, weight, self.exclude)
        if not result.metrics:
            self.all_metrics = False
        elif self.all_metrics:
            for name, value in result.metrics.items():
                if _number(value):
                    self.metric_total[name] = self.metric_total.get(name, 0.0) + float(value) * weight
                    self.metric_weight[name] = self.metric_weight.get(name, 0.0) + weight
        self.count += 1
        self.contributors.append(str(result.meta.get(CLIENT_NAME, CLIENT_UNKNOWN)))

    def result(self, current_round: int | None) -> ModelMessage:
        """The aggregate (its sums are spent): NVFlare's meta ``nr_aggregated`` and ``current_round``."""
        metrics = None
        if self.all_metrics and self.count:
            metrics = {k: self.metric_total[k] / self.metric_weight[k] for k in self.metric_total}
        return ModelMessage(
            self.params.mean(in_place=True),
            self.params_type or ParamsType.FULL,
            metrics,
            {NR_AGGREGATED: self.count, "current_round": current_round},
            current_round,
        )


def numeric_metrics(model: ModelMessage) -> dict[str, float]:
    """The model's metrics that are numbers (for the round's progress and the training curve)."""
    return {k: float(v) for k, v in (model.metrics or {}).items() if _number(v)}


def save_torch_model(path: Path, model: ModelMessage) -> None:
    """Write ``model``'s parameters as tensors with ``torch.save`` (so it loads with ``weights_only=True``).

    Its rounds, metrics and meta go to ``<path>.metadata`` as JSON.
    """
    import torch
    from flruntime.components.persistors.pt_file import plain_meta, storable

    params = {
        name: storable(torch.from_numpy(np.array(value)) if isinstance(value, np.ndarray) else value)
        for name, value in (model.params or {}).items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(params, path)
    meta = {
        "params_type": str(model.params_type),
        "metrics": model.metrics,
        "meta": model.meta,
        "current_round": model.current_round,
        "total_rounds": model.total_rounds,
    }
    Path(f"{path}.metadata").write_text(json.dumps(plain_meta(meta), indent=2), encoding="utf-8")


def load_torch_model(path: Path) -> ModelMessage:
    """Read a model :func:`save_torch_model` wrote."""
    import torch
    from flruntime.components.persistors.pt_file import to_numpy

    params = {k: to_numpy(v) for k, v in torch.load(path, weights_only=True).items()}
    extra = Path(f"{path}.metadata")
    info = json.loads(extra.read_text(encoding="utf-8")) if extra.is_file() else {}
    return ModelMessage(
        params,
        ParamsType(info.get("params_type", "FULL")),
        info.get("metrics"),
        dict(info.get("meta") or {}),
        info.get("current_round"),
        info.get("total_rounds"),
    )


class BaseFedAvg(ModelController):
    """FedAvg's aggregation and model update over :class:`ModelController` (NVFlare's ``BaseFedAvg``).

    Args:
        num_clients: clients sampled per round (``sample_clients``; more than there are: all of them).
        num_rounds: rounds to run.
        start_round: the first round's number.
        persistor_id: as :class:`ModelController`.
        ignore_result_error: as :class:`ModelController`.
        allow_empty_global_weights: as :class:`ModelController`.
        task_check_period: as :class:`ModelController`.
    """

    def __init__(
        self,
        num_clients: int | None = 3,
        num_rounds: int = 5,
        start_round: int = 0,
        persistor_id: Annotated[str, Ref(ModelPersistor, optional=True)] = DEFAULT_PERSISTOR_ID,
        ignore_result_error: bool = False,
        allow_empty_global_weights: bool = False,
        task_check_period: float = 0.5,
    ) -> None:
        super().__init__(persistor_id, ignore_result_error, allow_empty_global_weights, task_check_period)
        if num_clients is not None:
            check_number("num_clients", num_clients, integer=True)
        check_number("num_rounds", num_rounds, integer=True)
        check_number("start_round", start_round, integer=True)
        self.num_clients = num_clients
        self.num_rounds = num_rounds
        self.start_round = start_round
        self.current_round = None
        #: The clients whose results the last :meth:`train_round` aggregated.
        self.round_contributors: list[str] = []

    @staticmethod
    def _check_results(results: list[ModelMessage]) -> None:
        empty = [r.meta.get(CLIENT_NAME, CLIENT_UNKNOWN) for r in results if not r.params]
        if empty:
            raise ValueError(f"Result from client(s) {empty} is empty!")

    @staticmethod
    def aggregate_fn(results: list[ModelMessage]) -> ModelMessage:
        """The step-weighted mean of ``results`` (metrics too, when every result has metrics).

        Raises:
            ValueError: no results.
        """
        if not results:
            raise ValueError("received empty results for aggregation.")
        mean = ModelMean()
        for result in results:
            mean.add(result, steps_of(result))
        return mean.result(results[0].current_round)

    def aggregate(
        self, results: list[ModelMessage], aggregate_fn: Callable[[list[ModelMessage]], ModelMessage] | None = None
    ) -> ModelMessage:
        """Aggregate a round's results with ``aggregate_fn`` (default :meth:`aggregate_fn`).

        Raises:
            ValueError: a result has no parameters.
            RuntimeError: ``aggregate_fn`` failed.
        """
        self.debug("Start aggregation.")
        bus = self.ctx.bus
        bus.fire(EventType.BEFORE_AGGREGATION, round=self.current_round)
        self._check_results(results)
        fn = aggregate_fn or self.aggregate_fn
        self.info(f"aggregating {len(results)} update(s) at round {self.current_round}")
        try:
            aggregate = fn(results)
        except Exception as exc:
            raise RuntimeError(f"Exception in aggregate call: {type(exc).__name__}: {exc}") from exc
        bus.fire(EventType.AFTER_AGGREGATION, round=self.current_round, aggregate=aggregate)
        self.debug("End aggregation.")
        return aggregate

    def update_model(self, model: ModelMessage, aggr_result: ModelMessage) -> ModelMessage:
        """Apply the aggregate to ``model`` (in place, and returned): DIFF is added, FULL replaces its variables.

        The model takes the aggregate's meta and metrics, as in NVFlare.

        Raises:
            RuntimeError: ``model`` is not FULL, or a DIFF names a variable the model lacks.
        """
        if model.params_type != ParamsType.FULL:
            raise RuntimeError(f"params_type {model.params_type} of `model` not supported! Expected `ParamsType.FULL`.")
        params = dict(model.params or {})
        update = aggr_result.params or {}
        if aggr_result.params_type == ParamsType.FULL:
            params.update(update)
        else:
            for name, diff in update.items():
                if name not in params:
                    raise RuntimeError(f"the aggregate has variable '{name}', which the global model lacks")
                params[name] = np.asarray(params[name]) + diff
        model.params = params
        model.meta = dict(aggr_result.meta)
        model.metrics = aggr_result.metrics
        self.ctx.models[GLOBAL_MODEL] = model
        return model

    def _aggregates_lists(self) -> bool:
        """True when the subclass (or instance) replaced ``aggregate`` or ``aggregate_fn``: results are collected."""
        cls = type(self)
        return (
            "aggregate_fn" in vars(self)
            or cls.aggregate is not BaseFedAvg.aggregate
            or cls.aggregate_fn is not BaseFedAvg.aggregate_fn
        )

    def train_round(
        self,
        model: ModelMessage,
        clients: list[str],
        task_name: str = "train",
        exclude_vars: str | None = None,
        aggregation_weights: Mapping[str, float] | None = None,
        aggregator: Any = None,
    ) -> ModelMessage | None:
        """Send ``model`` to ``clients`` and return the aggregate of their results (None when the job was aborted).

        Results are folded into the mean as they arrive, unless ``aggregate`` or ``aggregate_fn`` was replaced
        (then the results are collected and handed to them, as in NVFlare).

        Args:
            model: the global model for the round.
            clients: the clients to train.
            task_name: the task sent.
            exclude_vars: variables whose name this regex finds are left out of the aggregate.
            aggregation_weights: a weight per client, multiplied by its ``NUM_STEPS_CURRENT_ROUND``.
            aggregator: NVFlare's ``ModelAggregator`` (``accept_model``, ``aggregate_model``, ``reset_stats``) to
                aggregate instead.
        """
        rnd = self.current_round
        if self._aggregates_lists() and aggregator is None:
            results = self.send_model_and_wait(task_name=task_name, targets=clients, data=model)
            if self.ctx.abort.is_set():
                return None
            self.round_contributors = [str(r.meta.get(CLIENT_NAME, CLIENT_UNKNOWN)) for r in results]
            return self.aggregate(results, aggregate_fn=self.aggregate_fn)
        weights = dict(aggregation_weights or {})
        mean = ModelMean(re.compile(exclude_vars) if exclude_vars else None)
        empty: list[str] = []
        if aggregator is not None:
            aggregator.reset_stats()

        def fold(result: ModelMessage) -> None:
            site = str(result.meta.get(CLIENT_NAME, CLIENT_UNKNOWN))
            if not result.params:
                empty.append(site)
            elif aggregator is not None:
                aggregator.accept_model(result)
                mean.count += 1
                mean.contributors.append(site)
            else:
                mean.add(result, weights.get(site, 1.0) * steps_of(result))

        self.prepare_send(model, task_name, clients)(fold)
        self._raise_if_failed()
        if self.ctx.abort.is_set():
            return None
        self.round_contributors = list(mean.contributors)
        bus = self.ctx.bus
        bus.fire(EventType.BEFORE_AGGREGATION, round=rnd)
        if empty:
            raise ValueError(f"Result from client(s) {empty} is empty!")
        if not mean.count:
            raise RuntimeError("Exception in aggregate call: ValueError: received empty results for aggregation.")
        self.info(f"aggregating {mean.count} update(s) at round {rnd}")
        if aggregator is not None:
            aggregate = aggregator.aggregate_model()
            aggregate.meta = {**(aggregate.meta or {}), NR_AGGREGATED: mean.count, "current_round": rnd}
        else:
            aggregate = mean.result(rnd)
        bus.fire(EventType.AFTER_AGGREGATION, round=rnd, aggregate=aggregate)
        return aggregate
