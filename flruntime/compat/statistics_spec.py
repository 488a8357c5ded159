"""NVFlare's federated-statistics client API (``nvflare.app_common.abstract.statistics_spec``).

A site's ``Statistics`` component answers for each dataset and feature: count, sum, mean, stddev,
variance with a global mean, histogram, min / max, failure count and quantiles. These are its data types and
its base class, so that code written for NVFlare's federated statistics imports and builds here; the
workflow that asks the questions (``StatisticsController``) is not part of flruntime yet.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from flruntime.compat.component import FLComponent
from flruntime.compat.fl_context import FLContext


class DataType(IntEnum):
    """A feature's type."""

    INT = 0
    FLOAT = 1
    STRING = 2
    BYTES = 3
    STRUCT = 4
    DATETIME = 5


class HistogramType(IntEnum):
    """Whether a histogram is exact or approximate."""

    STANDARD = 0
    QUANTILES = 1


@dataclass
class Feature:
    """A feature's name and type."""

    feature_name: str
    data_type: DataType


@dataclass
class BinRange:
    """A histogram's value range."""

    min_value: float
    max_value: float


@dataclass
class Bin:
    """One histogram bin."""

    low_value: float
    high_value: float
    sample_count: int


@dataclass
class Histogram:
    """A histogram: its type and bins."""

    hist_type: HistogramType
    bins: list[Bin]
    hist_name: str | None = None


@dataclass
class StatisticConfig:
    """One statistic to compute and its settings (e.g. the bins of a histogram)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)


class Statistics(FLComponent, ABC):
    """A site's statistics of its local datasets (override what the job's statistic configs ask for)."""

    def initialize(self, fl_ctx: FLContext) -> None:  # noqa: B027 - optional hook
        """Load the data (called once, at the start)."""

    def pre_run(
        self, statistics: list[str], num_of_bins: dict[str, int | None], bin_ranges: dict[str, Any]
    ) -> dict[str, Any]:
        """Called before the statistics are asked; the default returns nothing."""
        return {}

    @abstractmethod
    def features(self) -> dict[str, list[Feature]]:
        """The features of each dataset."""

    def count(self, dataset_name: str, feature_name: str) -> int:
        """The number of values."""
        raise NotImplementedError("count")

    def sum(self, dataset_name: str, feature_name: str) -> float:
        """The sum of the values."""
        raise NotImplementedError("sum")

    def mean(self, dataset_name: str, feature_name: str) -> float:
        """The mean of the values."""
        raise NotImplementedError("mean")

    def stddev(self, dataset_name: str, feature_name: str) -> float:
        """The standard deviation of the values."""
        raise NotImplementedError("stddev")

    def variance_with_mean(
        self, dataset_name: str, feature_name: str, global_mean: float, global_count: float
    ) -> float:
        """The sum of squared differences to the global mean, over the global count less one."""
        raise NotImplementedError("variance_with_mean")

    def histogram(
        self, dataset_name: str, feature_name: str, num_of_bins: int, global_min_value: float, global_max_value: float
    ) -> Histogram:
        """A histogram over the global range."""
        raise NotImplementedError("histogram")

    def max_value(self, dataset_name: str, feature_name: str) -> float:
        """The largest value."""
        raise NotImplementedError("max_value")

    def min_value(self, dataset_name: str, feature_name: str) -> float:
        """The smallest value."""
        raise NotImplementedError("min_value")

    def failure_count(self, dataset_name: str, feature_name: str) -> int:
        """The number of values that could not be read."""
        return 0

    def quantiles(self, dataset_name: str, feature_name: str, percentiles: list[float]) -> dict[str, Any]:
        """The values at ``percentiles``."""
        raise NotImplementedError("quantiles")

    def finalize(self, fl_ctx: FLContext) -> None:  # noqa: B027 - optional hook
        """Clean up."""


__all__ = ["Bin", "BinRange", "DataType", "Feature", "Histogram", "HistogramType", "StatisticConfig", "Statistics"]
