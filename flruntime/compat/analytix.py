"""NVFlare's ``nvflare.apis.analytix``: ``AnalyticsData`` and the names of its data types and writers.

flruntime's tracking events carry an :class:`~flruntime.tracking.record.AnalyticsRecord`; a component written
for NVFlare hears them with the record as an ``AnalyticsData`` DXO (kind ``ANALYTIC``) in the event data
(``fl_ctx.get_prop(FLContextKey.EVENT_DATA)``), as NVFlare's ``AnalyticsReceiver`` subclasses expect.
"""

from __future__ import annotations

from typing import Any

from flruntime.compat.dxo import DXO, DataKind
from flruntime.tracking.record import AnalyticsDataType, AnalyticsRecord, LogWriterName

#: The local event a tracked value is fired as (its federated form is ``fed.analytix_log_stats``).
ANALYTIC_EVENT_TYPE = "analytix_log_stats"


class TrackConst:
    """Keys of an analytics DXO."""

    TRACK_KEY = "track_key"
    TRACK_VALUE = "track_value"
    TRACKER_KEY = "tracker_key"
    PATH_KEY = "path"
    LOG_DIR_KEY = "log_dir"
    GLOBAL_STEP_KEY = "global_step"
    DATA_TYPE_KEY = "analytics_data_type"
    KWARGS_KEY = "analytics_kwargs"


class AnalyticsData:
    """One tracked value, as NVFlare's writers send it.

    Args:
        key: the metric's (or parameter's, tag's) name.
        value: its value.
        data_type: an :class:`AnalyticsDataType`.
        sender: the writer style that logged it.
        step: the global step.
        **kwargs: extra arguments of the writer call.
    """

    def __init__(
        self,
        key: str,
        value: Any,
        data_type: AnalyticsDataType | str,
        sender: LogWriterName | str = LogWriterName.TORCH_TB,
        step: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.tag = key
        self.value = value
        self.data_type = AnalyticsDataType(data_type)
        self.sender = LogWriterName(sender)
        self.step = step
        self.kwargs = kwargs

    def to_dxo(self) -> DXO:
        """The ANALYTIC DXO NVFlare sends."""
        meta: dict[str, Any] = {TrackConst.DATA_TYPE_KEY: str(self.data_type), TrackConst.TRACKER_KEY: str(self.sender)}
        if self.step is not None:
            meta[TrackConst.GLOBAL_STEP_KEY] = self.step
        if self.kwargs:
            meta[TrackConst.KWARGS_KEY] = dict(self.kwargs)
        return DXO(DataKind.ANALYTIC, {TrackConst.TRACK_KEY: self.tag, TrackConst.TRACK_VALUE: self.value}, meta)

    @classmethod
    def from_dxo(cls, dxo: DXO, receiver: LogWriterName | str | None = None) -> AnalyticsData:
        """The AnalyticsData an ANALYTIC DXO holds (converted for ``receiver``'s style when given)."""
        if dxo.data_kind != DataKind.ANALYTIC:
            raise ValueError(f"expected an ANALYTIC DXO, got {dxo.data_kind}")
        meta = dxo.meta
        data = cls(
            dxo.data[TrackConst.TRACK_KEY],
            dxo.data[TrackConst.TRACK_VALUE],
            meta[TrackConst.DATA_TYPE_KEY],
            meta.get(TrackConst.TRACKER_KEY, LogWriterName.TORCH_TB),
            meta.get(TrackConst.GLOBAL_STEP_KEY),
            **(meta.get(TrackConst.KWARGS_KEY) or {}),
        )
        return data if receiver is None else cls.from_record(data.to_record().for_receiver(LogWriterName(receiver)))

    def to_record(self) -> AnalyticsRecord:
        """Flruntime's record of this value."""
        return AnalyticsRecord.make(self.tag, self.value, self.data_type, self.sender, self.step, **self.kwargs)

    @classmethod
    def from_record(cls, record: AnalyticsRecord) -> AnalyticsData:
        """The AnalyticsData of a flruntime record."""
        return cls(record.tag, record.value, record.data_type, record.writer, record.step, **record.kwargs)

    def __repr__(self) -> str:
        return f"AnalyticsData(tag={self.tag!r}, value={self.value!r}, data_type={self.data_type}, step={self.step})"


__all__ = ["ANALYTIC_EVENT_TYPE", "AnalyticsData", "AnalyticsDataType", "LogWriterName", "TrackConst"]
