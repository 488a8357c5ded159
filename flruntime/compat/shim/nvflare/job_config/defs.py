"""``nvflare.job_config.defs`` without NVFlare: FilterType and JobTargetType (flruntime's)."""

from flruntime.compat.jobapi.fed_job import FilterType, JobTargetType

__all__ = ["FilterType", "JobTargetType"]
