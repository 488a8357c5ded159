"""``nvflare.app_common.abstract.learnable`` without NVFlare: Learnable (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import Learnable

__all__ = ["Learnable"]
