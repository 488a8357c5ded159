"""``nvflare.app_common.widgets.streaming`` without NVFlare: AnalyticsReceiver, the receivers' base (flruntime's).

See :mod:`flruntime.compat`.
"""

from flruntime.components.tracking.receiver import AnalyticsReceiver

__all__ = ["AnalyticsReceiver"]
