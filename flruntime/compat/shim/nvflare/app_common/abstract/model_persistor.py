"""``nvflare.app_common.abstract.model_persistor`` without NVFlare: ModelPersistor (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import ModelPersistor

__all__ = ["ModelPersistor"]
