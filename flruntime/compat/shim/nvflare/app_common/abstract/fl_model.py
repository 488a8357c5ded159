"""``nvflare.app_common.abstract.fl_model`` without NVFlare: FLModel and ParamsType (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.runtime.messages import ModelMessage as FLModel
from flruntime.runtime.messages import ParamsType


class FLModelConst:
    """Names of an FLModel's fields."""

    PARAMS_TYPE = "params_type"
    PARAMS = "params"
    METRICS = "metrics"
    META = "meta"
    CURRENT_ROUND = "current_round"
    TOTAL_ROUNDS = "total_rounds"


__all__ = ["FLModel", "FLModelConst", "ParamsType"]
