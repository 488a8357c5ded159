"""A numpy "trainer" for demos and tests (NVFlare's ``nvflare.app_common.np.np_trainer.NPTrainer``).

Training adds ``delta`` to the model's ``numpy_key`` array and keeps the result as the site's local model
(``<site workspace>/<model_dir>/<model_name>``); ``submit_model`` sends that local model back (for
cross-site evaluation). No data is involved: the point is to exercise a job's plumbing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flruntime.components.persistors.np_file import NUMPY_KEY, save_array

from flruntime.roles import Executor
from flruntime.runtime.context import TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage, ParamsType

log = logging.getLogger(__name__)


def wait_or_abort(seconds: float, ctx: TaskContext, who: str) -> None:
    """Sleep ``seconds`` (NVFlare's ``sleep_time``), returning early and raising when the task is aborted.

    Raises:
        RuntimeError: the task or the job was aborted while waiting.
    """
    if seconds > 0 and ctx.abort.wait(seconds):
        raise RuntimeError(f"{who}: task '{ctx.task_name}' was aborted")


def numpy_model(data: ModelMessage, who: str) -> dict[str, np.ndarray]:
    """Return the full model's parameters, which must hold ``numpy_key``.

    Raises:
        ValueError: the task data is a difference, has no parameters, or lacks ``numpy_key``.
    """
    if data.params_type != ParamsType.FULL:
        raise ValueError(f"{who}: the task data must be a FULL model (NVFlare's WEIGHTS), got {data.params_type}")
    if not data.params:
        raise ValueError(f"{who}: no model weights in the task data")
    if NUMPY_KEY not in data.params:
        raise ValueError(f"{who}: '{NUMPY_KEY}' not found in the model (it has {sorted(data.params)})")
    return dict(data.params)


class NPTrainer(Executor):
    """Adds ``delta`` to the ``numpy_key`` array (task ``train``) and submits its last model (``submit_model``).

    Args:
        delta: the number added to every element of the array in each training task.
        sleep_time: seconds to wait before each task (to simulate work); an abort ends the wait.
        train_task_name: the training task.
        submit_model_task_name: the task that asks for the local model.
        model_name: the local model's file name.
        model_dir: the local model's folder, relative to the site's workspace.
    """

    def __init__(
        self,
        delta: float = 1,
        sleep_time: float = 0,
        train_task_name: str = "train",
        submit_model_task_name: str = "submit_model",
        model_name: str = "best_numpy.npy",
        model_dir: str = "model",
    ) -> None:
        if isinstance(delta, bool) or not isinstance(delta, (int, float)):
            raise TypeError(f"delta must be an instance of float or int, got {type(delta).__name__}")
        if sleep_time < 0:
            raise ValueError(f"sleep_time must not be negative, got {sleep_time}")
        self.delta = delta
        self.sleep_time = float(sleep_time)
        self.train_task_name = train_task_name
        self.submit_model_task_name = submit_model_task_name
        self.model_name = model_name
        self.model_dir = model_dir

    def local_model_path(self, ctx: TaskContext) -> Path:
        """Where the site's local model is kept."""
        return ctx.run.workspace / self.model_dir / self.model_name

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Train or submit the local model.

        Raises:
            ValueError: an unknown task, or task data that is not a numpy model.
            FileNotFoundError: ``submit_model`` before any training on this site.
            RuntimeError: the task was aborted.
        """
        wait_or_abort(self.sleep_time, ctx, "NPTrainer")
        if task == self.train_task_name:
            return self._train(data, ctx)
        if task == self.submit_model_task_name:
            return self._submit(ctx)
        raise ValueError(
            f"NPTrainer handles tasks '{self.train_task_name}' and '{self.submit_model_task_name}', not '{task}'"
        )

    def _train(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        params = numpy_model(data, "NPTrainer")
        log.info("%s: round %s: training (adding %s)", ctx.site, ctx.current_round, self.delta)
        params[NUMPY_KEY] = np.asarray(params[NUMPY_KEY]) + self.delta
        try:
            save_array(self.local_model_path(ctx), params[NUMPY_KEY])
        except OSError as exc:  # as NVFlare: a model that cannot be kept does not fail the round
            log.error("%s: cannot save the local model to %s: %s", ctx.site, self.local_model_path(ctx), exc)
        return ModelMessage(params, ParamsType.FULL, meta={MetaKey.NUM_STEPS_CURRENT_ROUND.value: 1})

    def _submit(self, ctx: TaskContext) -> ModelMessage:
        path = self.local_model_path(ctx)
        if not path.is_file():
            raise FileNotFoundError(f"NPTrainer: no local model at {path} (this site has not trained yet)")
        return ModelMessage({NUMPY_KEY: np.load(path, allow_pickle=False)}, ParamsType.FULL)
