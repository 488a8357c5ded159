"""``nvflare.apis.signal`` without NVFlare: Signal (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.component import Signal

__all__ = ["Signal"]
