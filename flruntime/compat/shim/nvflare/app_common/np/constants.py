"""``nvflare.app_common.np.constants`` without NVFlare: NPConstants (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.constants import NPConstants

__all__ = ["NPConstants"]
