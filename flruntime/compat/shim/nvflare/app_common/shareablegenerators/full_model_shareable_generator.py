"""``nvflare.app_common.shareablegenerators.full_model_shareable_generator`` without NVFlare (flruntime's classes).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.shareables.full_model import FullModelShareableGenerator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(FullModelShareableGenerator)

__all__ = ["FullModelShareableGenerator"]
