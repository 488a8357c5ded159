"""flruntime: a federated-learning job runtime that runs NVFlare-format job folders.

The public API: validate a job folder, build one site's component graph, and the types they return.
"""

from flruntime.errors import ConfigError, FLRuntimeError, InstantiationError, UsageError
from flruntime.exit_codes import ExitCode
from flruntime.graph.builder import SiteGraph
from flruntime.graph.locate import ImportPolicy
from flruntime.graph.refs import Ref
from flruntime.problems import Problem, Severity
from flruntime.validation import Report, build_job_site, validate_job

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``flruntime.Session``: the admin session (imported on first use: it needs gRPC)."""
    if name == "Session":
        from flruntime.federation.admin import Session

        return Session
    raise AttributeError(f"module 'flruntime' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "ExitCode",
    "FLRuntimeError",
    "ImportPolicy",
    "InstantiationError",
    "Problem",
    "Ref",
    "Report",
    "Severity",
    "Session",
    "SiteGraph",
    "UsageError",
    "build_job_site",
    "validate_job",
]
