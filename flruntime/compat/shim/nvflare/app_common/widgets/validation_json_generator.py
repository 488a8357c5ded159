"""``nvflare.app_common.widgets.validation_json_generator`` without NVFlare: ValidationJsonGenerator (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.widgets.validation_json import ValidationJsonGenerator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ValidationJsonGenerator)

__all__ = ["ValidationJsonGenerator"]
