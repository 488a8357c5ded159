"""``nvflare.apis.filter`` without NVFlare: Filter (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.component import Filter

__all__ = ["Filter"]
