"""flruntime's stand-in for ``nvflare.app_common.aggregators``: InTimeAccumulateWeightedAggregator."""

from nvflare.app_common.aggregators.intime_accumulate_model_aggregator import InTimeAccumulateWeightedAggregator

__all__ = ["InTimeAccumulateWeightedAggregator"]
