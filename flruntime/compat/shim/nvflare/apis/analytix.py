"""``nvflare.apis.analytix`` without NVFlare: AnalyticsData and its names (flruntime's).

See :mod:`flruntime.compat.analytix`.
"""

from flruntime.compat.analytix import ANALYTIC_EVENT_TYPE, AnalyticsData, AnalyticsDataType, LogWriterName, TrackConst

__all__ = ["ANALYTIC_EVENT_TYPE", "AnalyticsData", "AnalyticsDataType", "LogWriterName", "TrackConst"]
