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
    "SiteGraph",
    "UsageError",
    "build_job_site",
    "validate_job",
]
