"""``nvflare.app_common.widgets.intime_model_selector`` without NVFlare (flruntime's classes).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.widgets.model_selector import IntimeModelSelectionHandler, IntimeModelSelector

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(IntimeModelSelectionHandler, IntimeModelSelector)

__all__ = ["IntimeModelSelectionHandler", "IntimeModelSelector"]
