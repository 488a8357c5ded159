"""``nvflare.app_opt.tf.model_persistor`` without NVFlare: TFModelPersistor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.persistors.tf_model import TFModelPersistor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(TFModelPersistor)

__all__ = ["TFModelPersistor"]
