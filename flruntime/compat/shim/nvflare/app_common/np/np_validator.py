"""``nvflare.app_common.np.np_validator`` without NVFlare: NPValidator (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.np_validator import NPValidator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(NPValidator)

__all__ = ["NPValidator"]
