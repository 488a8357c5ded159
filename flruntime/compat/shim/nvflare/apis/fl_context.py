"""``nvflare.apis.fl_context`` without NVFlare: FLContext (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.fl_context import FLContext

__all__ = ["FLContext"]
