"""``nvflare.app_common.abstract.model`` without NVFlare: ModelLearnable and its helpers (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import (
    ModelLearnable,
    ModelLearnableKey,
    make_model_learnable,
    model_learnable_to_dxo,
    validate_model_learnable,
)

__all__ = [
    "ModelLearnable",
    "ModelLearnableKey",
    "make_model_learnable",
    "model_learnable_to_dxo",
    "validate_model_learnable",
]
