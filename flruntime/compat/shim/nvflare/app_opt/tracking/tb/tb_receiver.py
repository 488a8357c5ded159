"""``nvflare.app_opt.tracking.tb.tb_receiver`` without NVFlare: TBAnalyticsReceiver (flruntime's).

See :mod:`flruntime.compat`; objects made here remember their arguments for the job API.
"""

from flruntime.components.tracking.tb_receiver import TBAnalyticsReceiver

from flruntime.compat.jobapi.export import remember_init_args

remember_init_args(TBAnalyticsReceiver)

__all__ = ["TBAnalyticsReceiver"]
