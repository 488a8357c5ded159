"""``nvflare.apis.fl_constant`` without NVFlare: NVFlare's constants (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.constants import EventScope, FLContextKey, FLMetaKey, ReservedKey, ReturnCode

__all__ = ["EventScope", "FLContextKey", "FLMetaKey", "ReservedKey", "ReturnCode"]
