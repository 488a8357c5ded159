"""``nvflare.apis.executor`` without NVFlare: Executor (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.component import Executor

__all__ = ["Executor"]
