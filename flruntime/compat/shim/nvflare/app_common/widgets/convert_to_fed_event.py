"""``nvflare.app_common.widgets.convert_to_fed_event`` without NVFlare: ConvertToFedEvent (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.tracking.convert_to_fed_event import ConvertToFedEvent

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(ConvertToFedEvent)

__all__ = ["ConvertToFedEvent"]
