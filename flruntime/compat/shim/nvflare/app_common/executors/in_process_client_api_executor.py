"""``nvflare.app_common.executors.in_process_client_api_executor`` without NVFlare (flruntime's classes).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.in_process import InProcessClientAPIExecutor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(InProcessClientAPIExecutor)

__all__ = ["InProcessClientAPIExecutor"]
