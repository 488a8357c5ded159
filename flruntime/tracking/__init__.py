"""Experiment tracking: the analytics record that writers produce and receivers store."""

from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

__all__ = ["AnalyticsDataType", "AnalyticsRecord", "LogWriterName"]
