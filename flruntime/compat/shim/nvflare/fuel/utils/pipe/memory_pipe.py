"""``nvflare.fuel.utils.pipe.memory_pipe`` without NVFlare: MemoryPipe (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.compat.jobapi.export import remember_init_args
from flruntime.pipes.memory import MemoryPipe

remember_init_args(MemoryPipe)

__all__ = ["MemoryPipe"]
