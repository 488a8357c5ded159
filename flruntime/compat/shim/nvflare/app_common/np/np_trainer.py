"""``nvflare.app_common.np.np_trainer`` without NVFlare: NPTrainer (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.np_trainer import NPTrainer

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(NPTrainer)

__all__ = ["NPTrainer"]
