"""``nvflare.apis.analytix`` without NVFlare: AnalyticsData and its names (flruntime's).

See :mod:`flruntime.compat.analytix`.
"""

from flruntime.compat.analytix import AnalyticsData, AnalyticsDataType, LogWriterName, TrackConst

__all__ = ["AnalyticsData", "AnalyticsDataType", "LogWriterName", "TrackConst"]
