"""``nvflare.app_common.np.np_formatter`` without NVFlare: NPFormatter (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.widgets.np_formatter import NPFormatter

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(NPFormatter)

__all__ = ["NPFormatter"]
