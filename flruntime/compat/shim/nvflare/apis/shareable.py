"""``nvflare.apis.shareable`` without NVFlare: Shareable (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.shareable import ReservedHeaderKey, ReturnCode, Shareable, make_copy, make_reply

__all__ = ["ReservedHeaderKey", "ReturnCode", "Shareable", "make_copy", "make_reply"]
