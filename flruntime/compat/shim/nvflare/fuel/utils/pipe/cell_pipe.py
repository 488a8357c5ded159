"""``nvflare.fuel.utils.pipe.cell_pipe`` without NVFlare: CellPipe and Mode (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.compat.jobapi.export import remember_init_args
from flruntime.pipes.base import Mode
from flruntime.pipes.cell import CellPipe

remember_init_args(CellPipe)

__all__ = ["CellPipe", "Mode"]
