"""``nvflare.app_opt.tf.in_process_client_api_executor`` without NVFlare: TFInProcessClientAPIExecutor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.tf import TFInProcessClientAPIExecutor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(TFInProcessClientAPIExecutor)

__all__ = ["TFInProcessClientAPIExecutor"]
