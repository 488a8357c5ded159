"""``nvflare.app_common.utils.fl_model_utils`` without NVFlare: FLModelUtils (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import FLModelUtils

__all__ = ["FLModelUtils"]
