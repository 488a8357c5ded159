"""NVFlare's TensorFlow Client API executor (``nvflare.app_opt.tf.in_process_client_api_executor``).

A Keras script receives and sends its weights layer by layer, ``{layer.name: layer.get_weights()}``; between
sites they travel flat, one numpy array per weight, named ``<layer>_nvf_<i>`` as NVFlare names them (so the
server's aggregators and persistors see plain arrays).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flruntime.components.executors.in_process import InProcessClientAPIExecutor

from flruntime.runtime.context import TaskContext
from flruntime.runtime.messages import ModelMessage

#: What joins a layer's name and a weight's index in a flat name (NVFlare's).
SPECIAL_KEY = "_nvf_"
_FLAT = re.compile(rf"^(.*){SPECIAL_KEY}(\d+)$")


def flat_layer_weights_dict(layers: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    """``{layer: [w0, w1]}`` → ``{"layer_nvf_0": w0, "layer_nvf_1": w1}`` (layers without weights left out)."""
    out: dict[str, np.ndarray] = {}
    for name, weights in layers.items():
        if isinstance(weights, np.ndarray):  # already a single array: kept under its own name
            out[name] = weights
            continue
        for i, weight in enumerate(weights or []):
            out[f"{name}{SPECIAL_KEY}{i}"] = np.asarray(weight)
    return out


def unflat_layer_weights_dict(flat: dict[str, Any]) -> dict[str, list[np.ndarray]]:
    """The inverse of :func:`flat_layer_weights_dict` (the weights of each layer in index order)."""
    grouped: dict[str, dict[int, np.ndarray]] = {}
    for key, value in flat.items():
        match = _FLAT.match(key)
        if match is None:
            raise ValueError(f"'{key}' is not a flat Keras weight name (<layer>{SPECIAL_KEY}<index>)")
        grouped.setdefault(match.group(1), {})[int(match.group(2))] = value
    return {layer: [weights[i] for i in sorted(weights)] for layer, weights in grouped.items()}


class TFInProcessClientAPIExecutor(InProcessClientAPIExecutor):
    """:class:`InProcessClientAPIExecutor` for Keras scripts: params are ``{layer: layer.get_weights()}``.

    Args:
        task_script_path: see :class:`InProcessClientAPIExecutor`.
        task_script_args: see there.
        task_wait_time: see there.
        result_pull_interval: see there.
        log_pull_interval: see there.
        params_transfer_type: see there.
        from_nvflare_converter_id: a converter used instead of unflattening the layers' weights.
        to_nvflare_converter_id: a converter used instead of flattening them.
        train_with_evaluation: see there.
        train_task_name: see there.
        evaluate_task_name: see there.
        submit_model_task_name: see there.
        params_exchange_format: ``numpy`` (NVFlare's default for TensorFlow).
        server_expected_format: see there.
    """

    def __init__(
        self,
        task_script_path: str,
        task_script_args: str = "",
        task_wait_time: float | None = None,
        result_pull_interval: float = 0.5,
        log_pull_interval: float | None = None,
        params_transfer_type: str = "FULL",
        from_nvflare_converter_id: str | None = None,
        to_nvflare_converter_id: str | None = None,
        train_with_evaluation: bool = True,
        train_task_name: str = "train",
        evaluate_task_name: str = "validate",
        submit_model_task_name: str = "submit_model",
        params_exchange_format: str = "numpy",
        server_expected_format: str = "numpy",
    ) -> None:
        super().__init__(
            task_script_path,
            task_script_args,
            task_wait_time,
            result_pull_interval,
            log_pull_interval,
            params_exchange_format,
            params_transfer_type,
            from_nvflare_converter_id,
            to_nvflare_converter_id,
            train_with_evaluation,
            train_task_name,
            evaluate_task_name,
            submit_model_task_name,
            server_expected_format,
        )
        if str(params_transfer_type).upper() == "DIFF":
            raise ValueError("params_transfer_type DIFF is not supported for Keras layer weights (use FULL)")

    def task_input(self, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """The task's model with the weights grouped by layer (train and validate tasks)."""
        msg = super().task_input(data, ctx)
        unflatten = ctx.task_name in (self.train_task_name, self.evaluate_task_name)
        if unflatten and not self.from_nvflare_converter_id and msg.params:
            msg.params = unflat_layer_weights_dict(msg.params)
        return msg

    def task_output(self, result: ModelMessage, data: ModelMessage, ctx: TaskContext) -> ModelMessage:
        """The script's result with its layers' weights flat again (train and submit_model tasks)."""
        flatten = ctx.task_name in (self.train_task_name, self.submit_model_task_name)
        if flatten and not self.to_nvflare_converter_id and result.params:
            result.params = flat_layer_weights_dict(result.params)  # type: ignore[arg-type]
        return super().task_output(result, data, ctx)


__all__ = ["SPECIAL_KEY", "TFInProcessClientAPIExecutor", "flat_layer_weights_dict", "unflat_layer_weights_dict"]
