"""Server numpy models for cross-site evaluation (NVFlare's ``NPModelLocator``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flruntime.components.persistors.np_file import NUMPY_KEY

from flruntime.roles import ModelLocator
from flruntime.runtime.context import RunContext
from flruntime.runtime.messages import ModelMessage, ParamsType

log = logging.getLogger(__name__)

#: The model name of a single ``model_name`` file.
SERVER_MODEL_NAME = "server"


class NPModelLocator(ModelLocator):
    """Finds the numpy model(s) the server saved.

    Args:
        model_dir: the folder of the model files, relative to the workspace.
        model_name: a file name (the model is called ``server``), or model name → file name. Absolute file
            names are used as they are.
    """

    def __init__(self, model_dir: str = "models", model_name: str | dict[str, str] = "server.npy") -> None:
        if isinstance(model_name, str):
            self.files = {SERVER_MODEL_NAME: model_name}
        elif isinstance(model_name, dict) and all(isinstance(v, str) for v in model_name.values()):
            self.files = dict(model_name)
        else:
            raise TypeError(f"model_name must be a str or a dict of str, got {type(model_name).__name__}")
        self.model_dir = model_dir

    def model_names(self, ctx: RunContext) -> list[str]:
        """The configured model names (``["server"]`` by default)."""
        return list(self.files)

    def locate(self, name: str, ctx: RunContext) -> ModelMessage | None:
        """Return model ``name`` as a FULL model with one variable, ``numpy_key``; None when it cannot be read."""
        file = self.files.get(name)
        if file is None:
            return None
        path = Path(file) if Path(file).is_absolute() else ctx.workspace / self.model_dir / file
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.error("cannot load model '%s' from %s: %s", name, path, exc)
            return None
        return ModelMessage({NUMPY_KEY: array}, ParamsType.FULL)
