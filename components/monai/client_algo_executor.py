"""Running a MONAI ``ClientAlgo`` (usually ``monai.fl.client.MonaiAlgo``) as a client executor.

NVFlare's ``ClientAlgoExecutor``: at the start of the run the algorithm is initialised with the site's
name, its app folder and the stats sender (which ``MonaiAlgo`` attaches to the bundle's trainer and
evaluator); then

- ``train``: validate the received global model (its ``key_metric`` becomes the result's
  ``initial_metrics``), train on it, return the weights or their difference with the number of
  iterations run as ``NUM_STEPS_CURRENT_ROUND``;
- ``submit_model``: return the best (or final) local model the bundle saved;
- ``validate``: return the metrics of the received model on the site's validation data.

``MonaiAlgo`` writes into its bundle (checkpoints in ``models/``, evaluation results), so each site
runs from its own copy of the app folder, ``<site workspace>/app`` (as NVFlare deploys an app to each
site); the job folder itself is never written to.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from flruntime.components.persistors.pt_file import to_numpy
from monai.fl.client import ClientAlgo
from monai.fl.utils.constants import ExtraItems, FlStatistics, ModelType, WeightType
from monai.fl.utils.exchange_object import ExchangeObject

from flruntime.graph.refs import Ref
from flruntime.roles import Executor
from flruntime.runtime.context import RunContext, TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

log = logging.getLogger(__name__)

#: The folder of the site's copy of the app, in the site's workspace.
SITE_APP = "app"
#: ``submit_model_name`` values and the model each asks for.
MODEL_TYPES = {"best_model": ModelType.BEST_MODEL, "final_model": ModelType.FINAL_MODEL}


def _tensors(data: ModelMessage) -> dict[str, torch.Tensor]:
    """The received parameters as CPU tensors (sharing memory with writable arrays)."""
    if not data.params:
        raise ValueError("the task carries no model parameters")
    return {k: torch.as_tensor(v if v.flags.writeable else v.copy()) for k, v in data.params.items()}


def _scalars(metrics: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (metrics or {}).items():
        if isinstance(value, (torch.Tensor, np.ndarray, np.generic)) and np.ndim(value) == 0:
            value = value.item()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[str(name)] = float(value)
    return out


class ClientAlgoExecutor(Executor):
    """Handles train, submit_model and validate tasks with a MONAI ``ClientAlgo``.

    Args:
        client_algo_id: the ``ClientAlgo`` component (e.g. ``monai.fl.client.MonaiAlgo``).
        stats_sender_id: a component with ``attach(engine)`` (an ``NVFlareStatsHandler``) that the algorithm
            attaches to its engines to stream losses and metrics.
        train_task: the training task's name.
        submit_model_task: the name of the task that asks for the local model.
        validate_task: the validation task's name.
        key_metric: the metric of the received model reported with each training result.
    """

    def __init__(
        self,
        client_algo_id: Annotated[str, Ref(ClientAlgo)],
        stats_sender_id: Annotated[str, Ref()] | None = None,
        train_task: str = "train",
        submit_model_task: str = "submit_model",
        validate_task: str = "validate",
        key_metric: str = "accuracy",
    ) -> None:
        self.client_algo_id = client_algo_id
        self.stats_sender_id = stats_sender_id or None
        self.train_task = train_task
        self.submit_model_task = submit_model_task
        self.validate_task = validate_task
        self.key_metric = key_metric
        self._algo: ClientAlgo | None = None

    @staticmethod
    def site_app(ctx: RunContext) -> Path:
        """Return the site's own copy of the app folder (made or refreshed here; checkpoints in it are kept)."""
        if ctx.app_dir.resolve().is_relative_to(ctx.workspace.resolve()):
            return ctx.app_dir  # already the site's own
        dest = ctx.workspace / SITE_APP
        shutil.copytree(ctx.app_dir, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return dest

    def setup(self, ctx: RunContext) -> None:
        """Initialise the algorithm (it parses its bundle and builds its engines).

        Raises:
            TypeError: when the stats sender has no ``attach(engine)``.
        """
        algo = ctx.component(self.client_algo_id, ClientAlgo)
        sender = ctx.components.get(self.stats_sender_id) if self.stats_sender_id else None
        if sender is not None and not callable(getattr(sender, "attach", None)):
            raise TypeError(f"stats_sender_id: '{self.stats_sender_id}' has no attach(engine) method")
        app = self.site_app(ctx)
        algo.initialize(
            extra={
                ExtraItems.CLIENT_NAME: ctx.site,
                ExtraItems.APP_ROOT: str(app),
                ExtraItems.STATS_SENDER: sender,
                ExtraItems.LOGGING_FILE: False,
            }
        )
        self._algo = algo
        log.info("%s: %s initialised from %s", ctx.site, type(algo).__name__, app)

    def teardown(self, ctx: RunContext) -> None:
        """Finalise the algorithm."""
        if self._algo is not None:
            self._algo.finalize(extra={})
            self._algo = None

    @contextmanager
    def _abortable(self, algo: ClientAlgo, ctx: TaskContext) -> Iterator[None]:
        """Call ``algo.abort()`` if the job is aborted while the block runs."""
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.2):
                if ctx.abort.is_set():
                    algo.abort(extra={})
                    return

        watcher = threading.Thread(target=watch, name=f"{ctx.site}:abort-watch", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            done.set()
            watcher.join()
        if ctx.abort.is_set():
            raise RuntimeError(f"task '{ctx.task_name}' aborted")

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Run one task (a model without parameters or metrics when there is nothing to return).

        Raises:
            RuntimeError: when the algorithm was not initialised or the job was aborted.
            ValueError: for a task this executor does not handle.
        """
        if self._algo is None:
            raise RuntimeError("the client algorithm is not initialised")
        if task == self.train_task:
            return self._train(self._algo, data, ctx)
        if task == self.submit_model_task:
            return self._submit(self._algo, data, ctx)
        if task == self.validate_task:
            return ModelMessage(metrics=self._validate(self._algo, data, ctx))
        raise ValueError(f"ClientAlgoExecutor does not handle task '{task}'")

    def _validate(self, algo: ClientAlgo, data: ModelMessage, ctx: TaskContext) -> dict[str, float]:
        with self._abortable(algo, ctx):
            result = algo.evaluate(ExchangeObject(weights=_tensors(data)), extra={ExtraItems.ABORT: ctx.abort})
        return _scalars(result.metrics)

    def _train(self, algo: ClientAlgo, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        metrics = self._validate(algo, data, ctx)
        initial = metrics.get(self.key_metric)
        if initial is None:
            log.warning("%s: key_metric '%s' is not among the metrics %s", ctx.site, self.key_metric, sorted(metrics))
        weights = ExchangeObject(weights=_tensors(data), weight_type=WeightType.WEIGHTS)
        with self._abortable(algo, ctx):
            algo.train(weights, extra={ExtraItems.ABORT: ctx.abort})
        out = algo.get_weights(extra={})
        trained: dict[str, Any] | None = out.weights if out.is_valid_weights() else None
        if not trained:
            raise RuntimeError(f"{type(algo).__name__}.get_weights() returned no weights after training")
        steps = (out.statistics or {}).get(FlStatistics.NUM_EXECUTED_ITERATIONS)
        meta: dict[str, Any] = {}
        if steps is not None:
            meta[MetaKey.NUM_STEPS_CURRENT_ROUND.value] = int(steps)
        if initial is not None:
            meta[MetaKey.INITIAL_METRICS.value] = initial
        diff = out.weight_type == WeightType.WEIGHT_DIFF
        return ModelMessage(
            {k: to_numpy(v) for k, v in trained.items()},
            ParamsType.DIFF if diff else ParamsType.FULL,
            metrics={self.key_metric: initial} if initial is not None else None,
            meta=meta,
        )

    def _submit(self, algo: ClientAlgo, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        name = str(data.meta.get(MetaKey.SUBMIT_MODEL_NAME) or ctx.headers.get(MetaKey.SUBMIT_MODEL_NAME) or "")
        model_type = MODEL_TYPES.get(name or "best_model")
        if model_type is None:
            raise ValueError(f"unknown submit_model_name '{name}' (expected {' or '.join(MODEL_TYPES)})")
        weights: dict[str, Any] = algo.get_weights(extra={ExtraItems.MODEL_TYPE: model_type}).weights or {}
        if not weights:
            log.warning("%s: no %s to submit", ctx.site, name or "best_model")
            return ModelMessage()
        return ModelMessage({k: to_numpy(v) for k, v in weights.items()}, ParamsType.FULL)
