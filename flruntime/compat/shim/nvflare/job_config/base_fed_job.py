"""``nvflare.job_config.base_fed_job`` without NVFlare: BaseFedJob (flruntime's).

See :mod:`flruntime.compat.jobapi.base_fed_job`.
"""

from flruntime.compat.jobapi.base_fed_job import BaseFedJob

__all__ = ["BaseFedJob"]
