"""``nvflare.job_config.api`` without NVFlare: FedJob and its apps (flruntime's).

See :mod:`flruntime.compat.jobapi.fed_job`.
"""

from flruntime.compat.jobapi.fed_job import (
    ALL_SITES,
    SERVER_SITE_NAME,
    ClientApp,
    FedApp,
    FedJob,
    JobCtx,
    ServerApp,
    has_add_to_job_method,
    validate_object_for_job,
)

__all__ = [
    "ALL_SITES",
    "SERVER_SITE_NAME",
    "ClientApp",
    "FedApp",
    "FedJob",
    "JobCtx",
    "ServerApp",
    "has_add_to_job_method",
    "validate_object_for_job",
]
