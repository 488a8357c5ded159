"""``nvflare.fuel.flare_api.api_spec`` without NVFlare: the FLARE API's return codes, errors and info types.

See :mod:`flruntime.compat.flare_api_spec`.
"""

from flruntime.compat.flare_api_spec import (
    AuthenticationError,
    AuthorizationError,
    ClientInfo,
    ClientsStillRunning,
    InternalError,
    InvalidArgumentError,
    InvalidJobDefinition,
    InvalidTarget,
    JobInfo,
    JobNotDone,
    JobNotFound,
    JobNotRunning,
    MonitorReturnCode,
    NoClientsAvailable,
    NoConnection,
    NoReply,
    ServerInfo,
    SessionClosed,
    SessionSpec,
    SystemInfo,
    TargetType,
    job_monitor_cb_signature,
)

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ClientInfo",
    "ClientsStillRunning",
    "InternalError",
    "InvalidArgumentError",
    "InvalidJobDefinition",
    "InvalidTarget",
    "JobInfo",
    "JobNotDone",
    "JobNotFound",
    "JobNotRunning",
    "MonitorReturnCode",
    "NoClientsAvailable",
    "NoConnection",
    "NoReply",
    "ServerInfo",
    "SessionClosed",
    "SessionSpec",
    "SystemInfo",
    "TargetType",
    "job_monitor_cb_signature",
]
