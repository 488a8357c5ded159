"""``nvflare.app_common.workflows.scatter_and_gather`` without NVFlare: ScatterAndGather (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.scatter_and_gather import ScatterAndGather

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ScatterAndGather)

__all__ = ["ScatterAndGather"]
