"""``nvflare.app_common.app_event_type`` without NVFlare: AppEventType (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.constants import AppEventType

__all__ = ["AppEventType"]
