"""``nvflare.fuel.utils.pipe.pipe`` without NVFlare: the Pipe role and Mode (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.pipes.base import Mode
from flruntime.roles import Pipe

__all__ = ["Mode", "Pipe"]
