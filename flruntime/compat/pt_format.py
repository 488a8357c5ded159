"""NVFlare's ``PTModelPersistenceFormatManager`` (``nvflare.app_opt.pt.model_persistence_format_manager``).

It reads a PyTorch checkpoint in either shape NVFlare writes — a plain state dict, or the persistence dict
``{"model": state_dict, "train_conf": ..., "meta_props": ...}`` (flruntime's ``PTFileModelPersistor`` writes the
latter) — and turns it into a ModelLearnable of numpy arrays, and back.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from flruntime.compat.learnable import ModelLearnable, ModelLearnableKey, make_model_learnable


class PTModelPersistenceFormatManager:
    """Converts between a PyTorch checkpoint and a ModelLearnable.

    Args:
        data: a state dict, or a persistence dict with ``model`` (and ``train_conf``, ``meta_props``).
        default_train_conf: the training configuration to record when ``data`` has none.
        allow_numpy_conversion: turn tensors into numpy arrays in :meth:`to_model_learnable` and numpy
            arrays back into tensors in :meth:`update`.
    """

    PERSISTENCE_KEY_MODEL = "model"
    PERSISTENCE_KEY_TRAIN_CONF = "train_conf"
    PERSISTENCE_KEY_META_PROPS = "meta_props"

    def __init__(
        self,
        data: dict[str, Any],
        default_train_conf: dict[str, Any] | None = None,
        allow_numpy_conversion: bool = True,
    ) -> None:
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict (a state dict or a persistence dict), got {type(data).__name__}")
        self.allow_numpy_conversion = allow_numpy_conversion
        self.train_conf: Any = None
        self.meta: dict[str, Any] | None = None
        self.other_props: dict[str, Any] = {}
        if self.PERSISTENCE_KEY_MODEL in data:
            self.var_dict: dict[str, Any] = dict(data[self.PERSISTENCE_KEY_MODEL])
            self.meta = data.get(self.PERSISTENCE_KEY_META_PROPS)
            self.train_conf = data.get(self.PERSISTENCE_KEY_TRAIN_CONF)
            skip = (self.PERSISTENCE_KEY_MODEL, self.PERSISTENCE_KEY_META_PROPS, self.PERSISTENCE_KEY_TRAIN_CONF)
            self.other_props = {k: v for k, v in data.items() if k not in skip}
        else:
            self.var_dict = dict(data)
        if self.train_conf is None:
            self.train_conf = default_train_conf

    def _as_numpy(self, value: Any) -> Any:
        if self.allow_numpy_conversion and hasattr(value, "detach"):
            return value.detach().cpu().numpy()
        return value

    def to_model_learnable(self, exclude_vars: Any) -> ModelLearnable:
        """The weights (numpy arrays) and meta; variables whose names match ``exclude_vars`` (a regex) left out."""
        pattern = re.compile(exclude_vars) if isinstance(exclude_vars, str) and exclude_vars else None
        weights = {k: self._as_numpy(v) for k, v in self.var_dict.items() if pattern is None or not pattern.search(k)}
        return make_model_learnable(weights, self.meta)

    def to_persistence_dict(self) -> dict[str, Any]:
        """The checkpoint to ``torch.save``: ``model``, ``meta_props``, ``train_conf`` and other properties."""
        out: dict[str, Any] = {self.PERSISTENCE_KEY_MODEL: dict(self.var_dict)}
        if self.meta is not None:
            out[self.PERSISTENCE_KEY_META_PROPS] = self.meta
        if self.train_conf is not None:
            out[self.PERSISTENCE_KEY_TRAIN_CONF] = self.train_conf
        out.update(self.other_props)
        return out

    def update(self, ml: ModelLearnable) -> None:
        """Take the weights (as tensors when the old ones were) and meta of ``ml``."""
        weights = ml.get(ModelLearnableKey.WEIGHTS) or {}
        for name, value in weights.items():
            old = self.var_dict.get(name)
            to_tensor = self.allow_numpy_conversion and isinstance(value, np.ndarray) and hasattr(old, "detach")
            if to_tensor and old is not None:
                import torch

                value = torch.as_tensor(value).reshape(old.shape).to(old.dtype)
            self.var_dict[name] = value
        meta = ml.get(ModelLearnableKey.META)
        if meta is not None:
            self.meta = meta

    def get_persist_model_format(self) -> str:
        """``PT_DEFAULT``, the only format written."""
        return "PT_DEFAULT"


__all__ = ["PTModelPersistenceFormatManager"]
