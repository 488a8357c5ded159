"""``nvflare.app_common.launchers.subprocess_launcher`` without NVFlare: SubprocessLauncher (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.launchers.subprocess import SubprocessLauncher

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(SubprocessLauncher)

__all__ = ["SubprocessLauncher"]
