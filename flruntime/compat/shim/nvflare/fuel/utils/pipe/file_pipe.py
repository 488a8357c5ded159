"""``nvflare.fuel.utils.pipe.file_pipe`` without NVFlare: FilePipe (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.compat.jobapi.export import remember_init_args
from flruntime.pipes.file import FilePipe

remember_init_args(FilePipe)

__all__ = ["FilePipe"]
