"""``nvflare.app_common.tracking.tracker_types`` without NVFlare: the analytics event and writer names.

See :mod:`flruntime.compat`.
"""

from flruntime.compat.analytix import ANALYTIC_EVENT_TYPE
from flruntime.tracking.record import LogWriterName

__all__ = ["ANALYTIC_EVENT_TYPE", "LogWriterName"]
