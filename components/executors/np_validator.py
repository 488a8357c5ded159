"""A numpy "validator" for demos and tests (NVFlare's ``nvflare.app_common.np.np_validator.NPValidator``).

The metric is computed from the weights alone: ``accuracy = sum(w / max(w)) + epsilon * u`` with ``u`` drawn
uniformly from [0, 1) for each validation (NVFlare adds such a random term to make the cross-site matrix
differ between sites).
"""

from __future__ import annotations

import logging

import numpy as np
from flruntime.components.executors.np_trainer import numpy_model, wait_or_abort
from flruntime.components.persistors.np_file import NUMPY_KEY

from flruntime.roles import Executor
from flruntime.runtime.context import TaskContext
from flruntime.runtime.messages import MetaKey, ModelMessage

log = logging.getLogger(__name__)


def weights_metric(array: np.ndarray, noise: float = 0.0) -> float:
    """Return ``sum(array / max(array)) + noise``: NPValidator's metric.

    Raises:
        ValueError: the array is empty or its maximum is 0 (the metric is undefined).
    """
    values = np.asarray(array, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot validate an empty array")
    peak = float(np.max(values))
    if peak == 0.0:
        raise ValueError("cannot validate an array whose maximum is 0")
    return float(np.sum(values / peak)) + noise


class NPValidator(Executor):
    """Validates a numpy model: metric ``accuracy`` from its ``numpy_key`` array (task ``validate``).

    Args:
        epsilon: scale of the random term added to the metric (0: the metric depends on the weights only).
        sleep_time: seconds to wait before each task (to simulate work); an abort ends the wait.
        validate_task_name: the validation task (NVFlare 2.6's argument, removed in 2.9; accepted here).
    """

    def __init__(self, epsilon: float = 1, sleep_time: float = 0, validate_task_name: str = "validate") -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"epsilon must be a number >= 0, got {epsilon!r}")
        if sleep_time < 0:
            raise ValueError(f"sleep_time must not be negative, got {sleep_time}")
        self.epsilon = float(epsilon)
        self.sleep_time = float(sleep_time)
        self.validate_task_name = validate_task_name
        self._rng = np.random.default_rng()

    def execute(self, task: str, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """Return ``{"accuracy": ...}`` for the model in the task data.

        Raises:
            ValueError: an unknown task, or task data that is not a numpy model.
            RuntimeError: the task was aborted.
        """
        wait_or_abort(self.sleep_time, ctx, "NPValidator")
        if task != self.validate_task_name:
            raise ValueError(f"NPValidator handles task '{self.validate_task_name}', not '{task}'")
        params = numpy_model(data, "NPValidator")
        owner = ctx.headers.get(MetaKey.MODEL_OWNER.value, data.meta.get(MetaKey.MODEL_OWNER.value, "?"))
        noise = self.epsilon * float(self._rng.random()) if self.epsilon else 0.0
        accuracy = weights_metric(params[NUMPY_KEY], noise)
        log.info("%s: validated the model of %s: accuracy %.4f", ctx.site, owner, accuracy)
        return ModelMessage(metrics={"accuracy": accuracy})
