"""A numpy array as the global model (NVFlare's ``NPModelPersistor``, for the hello-numpy examples)."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flruntime.roles import ModelPersistor
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType

log = logging.getLogger(__name__)

#: The name of the one variable of a numpy model (NVFlare's ``NPConstants.NUMPY_KEY``).
NUMPY_KEY = "numpy_key"


def initial_array() -> np.ndarray:
    """NVFlare's default initial model: a 3×3 float32 array of 1…9."""
    return np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.float32)


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` in ``.npy`` format, atomically (a temp file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.asarray(array), allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NPModelPersistor(ModelPersistor):
    """Loads ``<model_dir>/<model_name>`` (else NVFlare's default 3×3 array) and saves the global model there.

    The model has one variable, ``numpy_key``. It is loaded from the workspace (a model an earlier run saved),
    else it is ``initial_model`` when given, else it comes from the app folder (a model the job ships), else it
    is :func:`initial_array`. It is saved to the workspace.

    Args:
        model_dir: the folder of the model file, relative to the workspace (and to the app folder when loading).
        model_name: the model's file name.
        initial_model: the initial global model as (nested) lists of numbers (NVFlare 2.7+'s recipes pass it).
    """

    def __init__(
        self, model_dir: str = "models", model_name: str = "server.npy", initial_model: list[Any] | None = None
    ) -> None:
        if not model_name:
            raise ValueError("model_name must not be empty")
        self.model_dir = model_dir
        self.model_name = model_name
        self.initial_model = initial_model
        self._initial = None if initial_model is None else np.asarray(initial_model, dtype=np.float32)

    def path_in(self, root: Path) -> Path:
        """The model file under ``root``."""
        return root / self.model_dir / self.model_name

    def load(self, ctx: RunContext) -> ModelMessage:
        """Return the saved (or initial, or shipped, or default) array as a FULL model."""
        for root in (ctx.workspace, ctx.app_dir):
            path = self.path_in(root)
            if path.is_file():
                log.info("loading the initial model from %s", path)
                return ModelMessage({NUMPY_KEY: np.load(path, allow_pickle=False)}, ParamsType.FULL)
            if self._initial is not None:
                return ModelMessage({NUMPY_KEY: self._initial.copy()}, ParamsType.FULL)
        log.info("no model at %s: using the default initial array", self.path_in(ctx.workspace))
        return ModelMessage({NUMPY_KEY: initial_array()}, ParamsType.FULL)

    def save(self, model: ModelMessage, ctx: RunContext) -> None:
        """Write the model's ``numpy_key`` array to the workspace."""
        params = model.params or {}
        if NUMPY_KEY not in params:
            raise KeyError(f"the model has no '{NUMPY_KEY}' variable (it has {sorted(params)})")
        save_array(self.path_in(ctx.workspace), params[NUMPY_KEY])
