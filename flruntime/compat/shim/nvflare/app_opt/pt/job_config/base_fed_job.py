"""``nvflare.app_opt.pt.job_config.base_fed_job`` without NVFlare: BaseFedJob (flruntime's)."""

from flruntime.compat.jobapi.pt import BaseFedJob

__all__ = ["BaseFedJob"]
