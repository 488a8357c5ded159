"""``nvflare.app_opt.pt.in_process_client_api_executor`` without NVFlare: PTInProcessClientAPIExecutor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.in_process import PTInProcessClientAPIExecutor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(PTInProcessClientAPIExecutor)

__all__ = ["PTInProcessClientAPIExecutor"]
