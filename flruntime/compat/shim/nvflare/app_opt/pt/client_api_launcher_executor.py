"""``nvflare.app_opt.pt.client_api_launcher_executor`` without NVFlare: PTClientAPILauncherExecutor (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.launcher import PTClientAPILauncherExecutor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(PTClientAPILauncherExecutor)

__all__ = ["PTClientAPILauncherExecutor"]
