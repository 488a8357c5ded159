"""``nvflare.app_common.abstract.statistics_spec`` without NVFlare: the statistics API (flruntime's).

See :mod:`flruntime.compat.statistics_spec`.
"""

from flruntime.compat.statistics_spec import (
    Bin,
    BinRange,
    DataType,
    Feature,
    Histogram,
    HistogramType,
    StatisticConfig,
    Statistics,
)

__all__ = ["Bin", "BinRange", "DataType", "Feature", "Histogram", "HistogramType", "StatisticConfig", "Statistics"]
