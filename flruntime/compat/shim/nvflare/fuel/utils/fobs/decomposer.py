"""``nvflare.fuel.utils.fobs.decomposer`` without NVFlare: fobs Decomposer (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.fobs import Decomposer

__all__ = ["Decomposer"]
