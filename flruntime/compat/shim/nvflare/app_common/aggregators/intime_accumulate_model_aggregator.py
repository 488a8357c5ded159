"""``nvflare.app_common.aggregators.intime_accumulate_model_aggregator`` without NVFlare (flruntime's classes).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.aggregators.intime import InTimeAccumulateWeightedAggregator

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(InTimeAccumulateWeightedAggregator)

__all__ = ["InTimeAccumulateWeightedAggregator"]
