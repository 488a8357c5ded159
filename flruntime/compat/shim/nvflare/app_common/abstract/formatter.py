"""``nvflare.app_common.abstract.formatter`` without NVFlare: Formatter (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import Formatter

__all__ = ["Formatter"]
