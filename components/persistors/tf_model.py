"""NVFlare's ``TFModelPersistor`` (``nvflare.app_opt.tf.model_persistor``): a Keras model's weights on disk.

Written on NVFlare's component API (:mod:`flruntime.compat`), as NVFlare's is. The model is a Keras model (in a
config: a nested component, ``{"path": "my_net.Net", "args": {}}``); its weights travel flat, one array per
weight named ``<layer>_nvf_<i>``, and are saved with Keras' ``save_weights`` as ``save_name`` (an ``.h5`` or
``.weights.h5`` file: HDF5, no pickle) in the server's folder for the job, from which the next run of the job
also starts.
"""

from __future__ import annotations

import os
from typing import Any

from flruntime.components.executors.tf import flat_layer_weights_dict, unflat_layer_weights_dict

from flruntime.compat.constants import EventType
from flruntime.compat.fl_context import FLContext
from flruntime.compat.learnable import ModelLearnable, ModelLearnableKey, ModelPersistor, make_model_learnable


class TFModelPersistor(ModelPersistor):
    """Loads the global Keras model's weights and saves them after each round.

    Args:
        model: the Keras model (built, or with ``_input_shape`` set so it can be built).
        save_name: the weights file in the server's folder for the job.
        filter_id: see :class:`~flruntime.compat.learnable.ModelPersistor`.
        source_ckpt_file_full_name: a Keras file to start from (a full ``.keras`` / ``.h5`` model, a SavedModel
            folder, or a weights file for ``model``); it wins over an earlier saved model.
    """

    def __init__(
        self,
        model: Any = None,
        save_name: str = "tf_model.weights.h5",
        filter_id: str | None = None,
        source_ckpt_file_full_name: str | None = None,
    ) -> None:
        super().__init__(filter_id=filter_id)
        self.model = model
        self.save_name = save_name
        self.source_ckpt_file_full_name = source_ckpt_file_full_name
        self._path = ""

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        """Find the save path at START_RUN."""
        if event_type == EventType.START_RUN:
            app_root = fl_ctx.get_engine().get_workspace().get_app_dir(fl_ctx.get_job_id())
            self._path = os.path.join(app_root, self.save_name)

    def _load_source(self, path: str) -> None:
        import tensorflow as tf

        if not os.path.exists(path):
            raise FileNotFoundError(f"source_ckpt_file_full_name: no such file or folder: {path}")
        if os.path.isdir(path) or (path.endswith((".keras", ".h5")) and not path.endswith(".weights.h5")):
            try:
                self.model = tf.keras.models.load_model(path)
                return
            except Exception:
                if self.model is None or os.path.isdir(path):
                    raise
        if self.model is None:
            raise ValueError(f"cannot load the weights file {path} without a model (give the persistor a model)")
        self.model.load_weights(path)

    def load_model(self, fl_ctx: FLContext) -> ModelLearnable:
        """The model's weights: from the source checkpoint, else the saved file, else the model as it is."""
        if self.source_ckpt_file_full_name:
            self._load_source(self.source_ckpt_file_full_name)
        elif self._path and os.path.exists(self._path):
            self.log_info(fl_ctx, f"loading the global model's weights from {self._path}")
            self.model.load_weights(self._path)
        if self.model is None:
            raise ValueError("TFModelPersistor needs a model (or a full model in source_ckpt_file_full_name)")
        if not self.model.built:
            shape = getattr(self.model, "_input_shape", None)
            if shape is None:
                raise AttributeError("the model is not built: build it, or set model._input_shape to build it later")
            self.model.build(input_shape=shape)
        layers = {layer.name: layer.get_weights() for layer in self.model.layers}
        return make_model_learnable(flat_layer_weights_dict(layers), {})

    def save_model(self, model_learnable: ModelLearnable, fl_ctx: FLContext) -> None:
        """Set the model's layers from the global weights and save them."""
        for name, weights in unflat_layer_weights_dict(model_learnable[ModelLearnableKey.WEIGHTS]).items():
            self.model.get_layer(name=name).set_weights(weights)
        self.model.save_weights(self._path)


__all__ = ["TFModelPersistor"]
