"""``nvflare.app_common.widgets.metric_relay`` without NVFlare: MetricRelay (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.widgets.metric_relay import MetricRelay

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(MetricRelay)

__all__ = ["MetricRelay"]
