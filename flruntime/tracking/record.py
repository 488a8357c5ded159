"""One logged value (a metric, a parameter, a tag, a text) as it travels from a training script to a receiver.

Records are plain JSON on the wire. Their data types and writer names are NVFlare's, so receivers
convert between writer styles the same way (TensorBoard SCALAR ⇄ MLflow METRIC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class AnalyticsDataType(StrEnum):
    """What kind of value a record holds."""

    SCALAR = "SCALAR"
    SCALARS = "SCALARS"
    METRIC = "METRIC"
    METRICS = "METRICS"
    PARAMETER = "PARAMETER"
    PARAMETERS = "PARAMETERS"
    TEXT = "TEXT"
    TAG = "TAG"
    TAGS = "TAGS"
    IMAGE = "IMAGE"
    MODEL = "MODEL"
    LOG_RECORD = "LOG_RECORD"


class LogWriterName(StrEnum):
    """The API style that produced a record."""

    TORCH_TB = "TORCH_TENSORBOARD"
    MLFLOW = "MLFLOW"
    WANDB = "WEIGHTS_AND_BIASES"


_NUMERIC = {AnalyticsDataType.SCALAR, AnalyticsDataType.METRIC}
_NUMERIC_DICTS = {AnalyticsDataType.SCALARS, AnalyticsDataType.METRICS}
_TO_METRIC = {AnalyticsDataType.SCALAR: AnalyticsDataType.METRIC, AnalyticsDataType.SCALARS: AnalyticsDataType.METRICS}
_TO_SCALAR = {v: k for k, v in _TO_METRIC.items()}


def _number(value: Any) -> float:
    if hasattr(value, "item"):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


@dataclass(frozen=True)
class AnalyticsRecord:
    """One logged value.

    Attributes:
        tag: the metric, parameter or tag name (``"metrics"`` / ``"params"`` / ``"tags"`` for dict types).
        value: a number, a dict of them, or text.
        data_type: what ``value`` is.
        writer: the API style that logged it.
        step: the global step (None when not given).
        kwargs: extra arguments (e.g. ``path`` for text artifacts).
    """

    tag: str
    value: Any
    data_type: AnalyticsDataType
    writer: LogWriterName = LogWriterName.TORCH_TB
    step: int | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(
        cls,
        tag: str,
        value: Any,
        data_type: AnalyticsDataType,
        writer: LogWriterName,
        step: int | None = None,
        **kwargs: Any,
    ) -> AnalyticsRecord:
        """Build and validate a record (numbers become floats; NaN and infinities are refused).

        Raises:
            TypeError: on a value of the wrong type for ``data_type``.
            ValueError: on a negative step or a non-finite number.
        """
        if not isinstance(tag, str) or not tag:
            raise TypeError("the tag must be a non-empty string")
        if step is not None:
            step = int(step)
            if step < 0:
                raise ValueError(f"step must be >= 0, got {step}")
        if data_type in _NUMERIC:
            value = _number(value)
            if not math.isfinite(value):
                raise ValueError(f"{tag}: {value} is not a finite number")
        elif data_type in _NUMERIC_DICTS:
            if not isinstance(value, dict):
                raise TypeError(f"{tag}: expected a dict of numbers, got {type(value).__name__}")
            value = {str(k): _number(v) for k, v in value.items()}
        elif data_type is AnalyticsDataType.TEXT and not isinstance(value, str):
            raise TypeError(f"{tag}: expected text, got {type(value).__name__}")
        elif data_type in (AnalyticsDataType.PARAMETERS, AnalyticsDataType.TAGS) and not isinstance(value, dict):
            raise TypeError(f"{tag}: expected a dict, got {type(value).__name__}")
        return cls(tag, value, AnalyticsDataType(data_type), LogWriterName(writer), step, dict(kwargs))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form sent between sites."""
        return {
            "tag": self.tag,
            "value": self.value,
            "data_type": str(self.data_type),
            "writer": str(self.writer),
            "step": self.step,
            "kwargs": self.kwargs,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalyticsRecord:
        """Rebuild (and re-validate) a record from its JSON form."""
        return cls.make(
            data["tag"],
            data["value"],
            AnalyticsDataType(data["data_type"]),
            LogWriterName(data.get("writer", LogWriterName.TORCH_TB)),
            data.get("step"),
            **(data.get("kwargs") or {}),
        )

    def for_receiver(self, receiver: LogWriterName) -> AnalyticsRecord:
        """Return the record as a receiver of another style expects it (TB SCALAR ⇄ MLflow/W&B METRIC)."""
        data_type = self.data_type
        if receiver in (LogWriterName.MLFLOW, LogWriterName.WANDB):
            data_type = _TO_METRIC.get(data_type, data_type)
        elif receiver is LogWriterName.TORCH_TB:
            data_type = _TO_SCALAR.get(data_type, data_type)
        if data_type is self.data_type:
            return self
        return AnalyticsRecord(self.tag, self.value, data_type, self.writer, self.step, self.kwargs)
