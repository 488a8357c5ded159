"""``nvflare.app_common.abstract.learnable_persistor`` without NVFlare: LearnablePersistor (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import LearnablePersistor

__all__ = ["LearnablePersistor"]
