"""``nvflare.fuel.flare_api.flare_api`` without NVFlare: sessions on flruntime's admin API.

See :mod:`flruntime.compat.flare_api`.
"""

from flruntime.compat.flare_api import (
    Session,
    basic_cb_with_print,
    new_insecure_session,
    new_secure_session,
)
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
    "Session",
    "SessionClosed",
    "SessionSpec",
    "SystemInfo",
    "TargetType",
    "basic_cb_with_print",
    "new_insecure_session",
    "new_secure_session",
]
