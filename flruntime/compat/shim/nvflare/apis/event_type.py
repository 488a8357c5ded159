"""``nvflare.apis.event_type`` without NVFlare: NVFlare's system events (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.compat.constants import EventType

__all__ = ["EventType"]
