"""``nvflare.app_common.abstract.model_learner`` without NVFlare: ModelLearner (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import ModelLearner

__all__ = ["ModelLearner"]
