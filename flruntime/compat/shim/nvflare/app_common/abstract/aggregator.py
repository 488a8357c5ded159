"""``nvflare.app_common.abstract.aggregator`` without NVFlare: Aggregator (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.learnable import Aggregator

__all__ = ["Aggregator"]
