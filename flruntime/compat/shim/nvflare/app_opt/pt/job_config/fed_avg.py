"""``nvflare.app_opt.pt.job_config.fed_avg`` without NVFlare: FedAvgJob (flruntime's)."""

from flruntime.compat.jobapi.pt import FedAvgJob

__all__ = ["FedAvgJob"]
