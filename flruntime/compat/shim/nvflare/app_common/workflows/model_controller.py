"""``nvflare.app_common.workflows.model_controller`` without NVFlare: ModelController (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.workflows.model_controller import ModelController

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ModelController)

__all__ = ["ModelController"]
