"""``nvflare.apis.fl_component`` without NVFlare: FLComponent (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.component import FLComponent

__all__ = ["FLComponent"]
