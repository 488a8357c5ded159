"""``nvflare.app_opt.pt.job_config.model`` without NVFlare: PTModel (flruntime's)."""

from flruntime.compat.jobapi.pt import PTModel

__all__ = ["PTModel"]
