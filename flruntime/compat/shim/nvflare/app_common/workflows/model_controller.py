"""``nvflare.app_common.workflows.model_controller`` without NVFlare: ModelController (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.workflows.model_controller import ModelController

__all__ = ["ModelController"]
