"""``nvflare.app_common.app_constant`` without NVFlare: AppConstants and friends (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.constants import AppConstants, DefaultCheckpointFileName, ModelName, ValidateType

__all__ = ["AppConstants", "DefaultCheckpointFileName", "ModelName", "ValidateType"]
