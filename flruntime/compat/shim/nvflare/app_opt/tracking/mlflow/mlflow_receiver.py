"""``nvflare.app_opt.tracking.mlflow.mlflow_receiver`` without NVFlare: MLflowReceiver (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.tracking.mlflow_receiver import MLflowReceiver

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(MLflowReceiver)

__all__ = ["MLflowReceiver"]
