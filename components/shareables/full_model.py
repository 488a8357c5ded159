"""The full-model shareable generator (NVFlare's ``FullModelShareableGenerator``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from flruntime.roles import ShareableGenerator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType


class FullModelShareableGenerator(ShareableGenerator):
    """Sends the whole global model; applies aggregates of full weights (replace) or of differences (add)."""

    def to_task_data(self, global_model: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Return the global model's parameters as FULL task data."""
        return ModelMessage(dict(global_model.params or {}), ParamsType.FULL, meta=dict(global_model.meta))

    def update(self, global_model: ModelMessage, aggregate: ModelMessage, ctx: RunContext) -> ModelMessage:
        """Replace the variables an aggregate of FULL weights has, or add an aggregate of DIFFs."""
        params = dict(global_model.params or {})
        if aggregate.params_type == ParamsType.FULL:
            params.update(aggregate.params or {})
        else:
            for name, diff in (aggregate.params or {}).items():
                if name not in params:
                    raise KeyError(f"the aggregated difference has variable '{name}' the global model lacks")
                params[name] = _add(params[name], diff)
        return ModelMessage(params, ParamsType.FULL, meta=dict(global_model.meta), current_round=ctx.current_round)


def _add(value: Any, diff: Any) -> Any:
    """``value + diff`` in ``value``'s dtype, written into ``diff``'s buffer when it can hold it (no new array)."""
    base, step = np.asarray(value), np.asarray(diff)
    if (
        step.dtype == base.dtype
        and step.shape == base.shape
        and step.flags.writeable
        and step.flags.c_contiguous
        and step.ndim > 0
    ):
        return np.add(step, base, out=step)
    return (base + step).astype(base.dtype, copy=False)
