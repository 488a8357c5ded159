"""``nvflare.app_common.executors.client_api_launcher_executor`` without NVFlare: flruntime's ClientAPILauncherExecutor.

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.executors.launcher import ClientAPILauncherExecutor

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ClientAPILauncherExecutor)

__all__ = ["ClientAPILauncherExecutor"]
