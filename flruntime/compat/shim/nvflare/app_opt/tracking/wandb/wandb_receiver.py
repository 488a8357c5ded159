"""``nvflare.app_opt.tracking.wandb.wandb_receiver`` without NVFlare: WandBReceiver (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.tracking.wandb_receiver import WandBReceiver

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(WandBReceiver)

__all__ = ["WandBReceiver"]
